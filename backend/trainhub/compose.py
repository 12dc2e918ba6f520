"""Job files built from other job files: `extends` and the shipped presets.

    extends: lora                      # a preset: config/presets/lora.yaml
    extends: [cpu-tiny, ../base.yaml]  # several; a path (ending .yaml/.yml) is read from this file's folder

An entry ending in `.yaml` or `.yml` is a file, relative to the folder of the file that names it
(absolute and `~` paths too); any other entry is a preset name, `config/presets/<name>.yaml`.
The files are merged in order, then the extending file's own keys, then `--set`: later wins.
Mappings merge key by key; anything else (lists included) is replaced whole. A shorthand string
under a mapping grows into `{type: string}` (as `--set` does), and a mapping whose `type` (or
`family`) differs from the one it lands on replaces it, so `adapter: {type: full}` over a LoRA
preset does not inherit `rank`. A cycle is an error naming the chain.

Every key keeps the file and line it was written at (`Origin`), so an error in the merged job
names the file in the chain where the offending key came from.
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass
from pathlib import Path

PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets"
"""The shipped fragments (a checkout's config/presets/)."""

Keys = tuple[str | int, ...]
TAGS = ("type", "family")  # the fields that pick a member of a union (trainhub.jobfile.TAGS)


@dataclass(frozen=True)
class Origin:
    """Where a key was written: the file as shown to the user, its line, and the file's folder."""

    file: str
    line: int
    folder: Path

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def compose(path: Path) -> tuple[dict, dict[Keys, Origin]]:
    """The job `path` describes with every `extends` merged in, and the origin of every key."""
    return _compose(Path(path), str(path), ())


def _compose(path: Path, shown: str, chain: tuple[tuple[Path, str], ...]) -> tuple[dict, dict[Keys, Origin]]:
    from trainhub.yamlfile import JobError, Problem, read_yaml

    real = path.expanduser().resolve()
    raw, lines = read_yaml(path)
    raw = {k: v for k, v in raw.items()}
    origins = {keys: Origin(shown, line, real.parent) for keys, line in lines.items()}
    parents = raw.pop("extends", None)
    if parents is None:
        return raw, origins
    at = origins[("extends",)]
    entries = [parents] if isinstance(parents, str) else parents
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
        raise JobError([Problem(str(at), "extends: expected a preset name or a .yaml path, or a list of them")])
    merged: dict = {}
    merged_origins: dict[Keys, Origin] = {}
    for i, entry in enumerate(entries):
        where = origins.get(("extends", i), at) if isinstance(parents, list) else at
        target, target_shown = _locate(entry.strip(), real.parent, shown, where)
        seen = [p for p, _ in chain] + [real]
        if target.resolve() in seen:
            names = [s for _, s in chain] + [shown]
            loop = names[seen.index(target.resolve()):] + [target_shown]
            raise JobError([Problem(str(where), "extends cycle: " + " -> ".join(loop))])
        base, base_origins = _compose(target, target_shown, (*chain, (real, shown)))
        merge(merged, merged_origins, base, base_origins)
    merge(merged, merged_origins, raw, {k: v for k, v in origins.items() if k[0] != "extends"})
    return merged, merged_origins


def _locate(entry: str, folder: Path, shown: str, where: Origin) -> tuple[Path, str]:
    """The file an extends entry names, and how to show it (relative to the naming file's as written)."""
    from trainhub.yamlfile import JobError, Problem

    if entry.endswith((".yaml", ".yml")):
        target = Path(entry).expanduser()
        if not target.is_absolute():
            shown_target = os.path.normpath(Path(shown).parent / target)
            target = folder / target
        else:
            shown_target = str(target)
        if not target.is_file():
            raise JobError([Problem(str(where), f"extends: {entry}: file not found ({target.resolve()}; a relative "
                                                f"path is read from the folder of the file that names it)")])
        return target, shown_target
    target = PRESETS / f"{entry}.yaml"
    if not target.is_file():
        known = presets()
        close = difflib.get_close_matches(entry, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise JobError([Problem(str(where), f"extends: unknown preset '{entry}'; {hint}presets: "
                                            f"{', '.join(known) or 'none'} ({PRESETS}); a file is named with "
                                            f"its .yaml suffix")])
    return target, str(target)


def presets() -> list[str]:
    """The names of the shipped presets."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def merge(dst: dict, dst_origins: dict[Keys, Origin], src: dict, src_origins: dict[Keys, Origin],
          prefix: Keys = ()) -> None:
    """Merge `src` into `dst` in place (see the module docstring), carrying the origins along."""
    for key, value in src.items():
        here = (*prefix, key)
        old = dst.get(key)
        if isinstance(value, dict) and isinstance(old, str):  # shorthand `adapter: lora` grows into a mapping
            old = {"type": old}
            if here in dst_origins:
                dst_origins[(*here, "type")] = dst_origins[here]
        if isinstance(value, dict) and isinstance(old, dict) and not _other_member(old, value):
            dst[key] = old
            merge(old, dst_origins, value, src_origins, here)
        else:
            dst[key] = copy.deepcopy(value)
            for k in [k for k in dst_origins if k[:len(here)] == here]:
                del dst_origins[k]
            dst_origins.update({k: v for k, v in src_origins.items() if k[:len(here)] == here})
        if here in src_origins:
            dst_origins[here] = src_origins[here]


def _other_member(old: dict, new: dict) -> bool:
    """`new` names a different member of a union than `old` (its `type` or `family` differs)."""
    return any(tag in new and tag in old and new[tag] != old[tag] for tag in TAGS)
