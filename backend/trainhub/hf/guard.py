"""The guard every patch in trainhub.hf stands behind: the upstream versions it was tested with, and
the upstream internals it touches, checked before it is applied.

Each patch module declares

    TESTED    {package: (lowest, highest)}: the versions it was run with (its CPU tests in the main
              environment, the GPU tests in Unsloth's), both ends included
    TOUCHES   the internals it relies on, one `Internal` each: a dotted name
              (transformers.Trainer.training_step), the parameters it must take, and text its source
              must hold (the call the patch replaces, an attribute it reads or resets)
    REQUIRED  whether a run may go on without it

and calls `guard(...)` before patching. Then:

    an internal moved (a name, a parameter or a source text is missing)
        REQUIRED (the non-finite skip, the token count, the tests' NaN injection: what an update does
        or what the rows say depends on it): refused. HfInternalMoved names what moved and the versions
        installed; the child fails at setup, before its first step, with an error row saying so. A skip
        that let a NaN update through, or rows without tokens, would be worse than no run.
        not REQUIRED (a speed-up only: the log one step late, the FLOPs count taken once): not applied,
        and a note in the start row says why; the Trainer's own code runs.
    versions outside TESTED, nothing moved
        applied, with a note in the start row naming the untested versions: refusing would stop every run
        after an upstream patch release, and the TOUCHES check is what catches a real move.

At patch time the guard is given the objects being patched (the trainer, its optimizer): a method is
then checked as that object's class has it, a subclass's override included (TRL's and Unsloth's
trainers override some), not as the upstream base class defines it. A source text is only held against
the upstream's own code: a function defined in a file of another package (Unsloth generates its
trainers' code) is checked by its parameters alone. tests/unit/test_hf_guards.py checks every TOUCHES entry against the installed upstream, so a move
fails there first, loudly, naming what moved.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

Versions = dict[str, tuple[str, str]]


class HfInternalMoved(RuntimeError):
    """An upstream internal that a required patch relies on is not where it was."""


@dataclass(frozen=True)
class Internal:
    name: str
    """Dotted: a module, then attributes (transformers.Trainer.training_step)."""
    params: tuple[str, ...] = ()
    """Parameters it must take, by name (a signature with *args or **kwargs takes any)."""
    source: tuple[str, ...] = ()
    """Text its source must hold, as the upstream writes it."""
    why: str = ""
    """What the patch does with it, said when it moved."""

    def resolve(self, instances: tuple = ()):
        """The named object; for a method, the one the first of `instances` that is an instance of its
        class really has (looked up on the instance's class, so a wrapper already set on the instance
        itself is passed over)."""
        parts = self.name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            owner = None
            for attr in parts[i:]:
                owner, obj = obj, getattr(obj, attr)
            if isinstance(owner, type):
                mine = next((x for x in instances if isinstance(x, owner)), None)
                if mine is not None:
                    obj = getattr(type(mine), parts[-1])
            return obj
        raise ImportError(f"no module of {self.name} can be imported")

    def moved(self, instances: tuple = ()) -> list[str]:
        """What is no longer as the patch expects; empty when nothing moved. `instances`: the objects
        being patched (see resolve)."""
        try:
            obj = self.resolve(instances)
        except (ImportError, AttributeError):
            found = [f"{self.name} is gone"]
        else:
            found = self._params_moved(obj) + self._source_moved(obj)
        return [f"{m} ({self.why})" if self.why else m for m in found]

    def _params_moved(self, obj) -> list[str]:
        if not self.params:
            return []
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return []
        kinds = {p.kind for p in sig.parameters.values()}
        if kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
            return []
        lacking = [p for p in self.params if p not in sig.parameters]
        return [f"{self.name} takes no {', '.join(lacking)} (its signature is {sig})"] if lacking else []

    def _source_moved(self, obj) -> list[str]:
        text = upstream_source(obj, self.name.split(".")[0]) if self.source else None
        if text is None:
            return []
        return [f"{self.name} no longer holds `{t}`" for t in self.source if t not in text]


def upstream_source(obj, package: str) -> str | None:
    """The source of `obj` when it is defined in a file of `package`; None for code another package put in
    its place, or code whose source cannot be read."""
    spec = importlib.util.find_spec(package)
    roots = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    try:
        file = Path(inspect.getsourcefile(obj) or "").resolve()
        if not any(root in file.parents for root in roots):
            return None
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return None


def installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def untested(tested: Versions) -> list[str]:
    """'transformers 5.24.0 (tested 5.17.0 to 5.23.0)' for each installed package outside its range. Local
    and pre-release tags are ignored (torch 2.13.0+cpu is 2.13.0)."""
    from packaging.version import Version

    out = []
    for package, (low, high) in tested.items():
        have = installed(package)
        if have is None:
            continue
        base = Version(Version(have).base_version)
        if not Version(low) <= base <= Version(high):
            out.append(f"{package} {have} (tested {low} to {high})")
    return out


def describe(tested: Versions) -> str:
    return ", ".join(f"{p} {installed(p) or 'absent'}" for p in tested)


def guard(patch: str, tested: Versions, touches: tuple[Internal, ...], *, required: bool,
          on: tuple = (), notes: list[str] | None = None) -> bool:
    """Whether to apply `patch` (see the module docstring); raises HfInternalMoved for a required patch
    whose internals moved. `on`: the objects being patched (the trainer, its optimizer). Notes go to
    `notes` (the start row's), or are printed when it is None."""
    moved = [m for internal in touches for m in internal.moved(on)]
    if moved:
        what = f"{patch}: " + "; ".join(moved) + f" (installed: {describe(tested)})"
        if required:
            raise HfInternalMoved(f"{what}. trainhub cannot apply it; install versions it was tested with: "
                                  + ", ".join(f"{p} {lo} to {hi}" for p, (lo, hi) in tested.items()))
        _note(notes, f"{what}: not applied, the Trainer's own code runs")
        return False
    off = untested(tested)
    if off:
        _note(notes, f"{patch}: applied with {', '.join(off)}")
    return True


def _note(notes: list[str] | None, text: str) -> None:
    if notes is None:
        print(f"note: {text}", flush=True)
    else:
        notes.append(text)
