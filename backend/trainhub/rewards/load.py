"""Loading a job's reward functions, with every mistake found before training starts.

`load(spec)` imports `package.module:function` or `path/to/file.py:function` and checks that it
can be called as TRL (and later the native engine) calls it: `fn(prompts=..., completions=...,
completion_ids=..., trainer_state=..., **fields)`, the fields being the prompt records' columns.
`probe(fn, spec, rows)` calls it on a few real prompts (the answer as the completion) and checks
that it returns one number (or None) per completion. Errors are RewardError, naming the reward
(method.rewards[i]) and what is wrong.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RewardError(ValueError):
    pass


# Keywords every reward call carries besides the record fields.
CALL_KEYWORDS = ("prompts", "completions", "completion_ids", "trainer_state")


def load(spec: str, where: str = "reward") -> Callable:
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise RewardError(f"{where}: file {target} not found (function '{spec}')")
        module_name = f"trainhub_reward_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            raise RewardError(f"{where}: importing {target} failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise RewardError(f"{where}: module '{target}' not found ({err}); write package.module:function "
                              f"for an importable module or path/to/file.py:function") from None
        except Exception as err:
            raise RewardError(f"{where}: importing {target} failed: {type(err).__name__}: {err}") from None
    fn = getattr(module, name, None)
    if fn is None:
        known = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise RewardError(f"{where}: {target} has no function '{name}' (it has: {', '.join(known) or 'none'})")
    if not callable(fn):
        raise RewardError(f"{where}: {spec} is a {type(fn).__name__}, not a function")
    check_signature(fn, spec, where)
    return fn


def check_signature(fn: Callable, spec: str, where: str, fields: tuple[str, ...] = ()) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to inspect
    try:
        sig.bind(**{k: None for k in (*CALL_KEYWORDS, *fields)})
    except TypeError as err:
        raise RewardError(f"{where}: {spec} has the wrong signature {sig} ({err}); a reward is called as "
                          f"fn(prompts, completions, **fields) with keyword arguments, so write "
                          f"def {getattr(fn, '__name__', 'fn')}(prompts, completions, **kwargs)") from None


def probe(fn: Callable, spec: str, where: str, rows: list[dict[str, Any]]) -> None:
    """Call `fn` on these prompt rows (each with its answer, or an empty string, as the completion)."""
    if not rows:
        return
    fields = {k: [row.get(k) for row in rows] for k in rows[0] if k != "prompt"}
    check_signature(fn, spec, where, tuple(fields))
    completions = [[{"role": "assistant", "content": str(row.get("answer") or "")}] for row in rows]
    try:
        out = fn(prompts=[row["prompt"] for row in rows], completions=completions,
                 completion_ids=[[] for _ in rows], trainer_state=None, **fields)
    except Exception as err:
        raise RewardError(f"{where}: {spec} raised {type(err).__name__}: {err} when called on the first "
                          f"{len(rows)} prompts") from None
    if not isinstance(out, list | tuple) or len(out) != len(rows):
        raise RewardError(f"{where}: {spec} returned {type(out).__name__} {out!r:.80}; it must return a list with "
                          f"one number per completion ({len(rows)} here)")
    for value in out:
        ok = value is None or (isinstance(value, int | float) and math.isfinite(value))
        if not ok:
            raise RewardError(f"{where}: {spec} returned {value!r:.40} ({type(value).__name__}) for a completion; "
                              f"each reward must be a finite number, or None where it does not apply")
