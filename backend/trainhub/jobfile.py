"""Job files: YAML in, a validated and resolved `Job` out, or a list of problems.

Three steps, each a small function:
  1. `read_yaml`   parse the file and remember the line of every key (`compose` does it for
                   every file an `extends` names and merges them, trainhub.compose);
  2. `apply_sets`  apply `--set a.b=value` overrides (values parsed as YAML scalars);
  3. `validate`    build the `Job`; pydantic errors become `Problem`s naming the
                   file:line, the key path, the value, and for an unknown key the
                   closest known key;
then `resolve` makes paths absolute and `preflight` checks that named files
exist and the run folder can be written, so a bad job fails before any work starts.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from trainhub.compose import Origin, compose
from trainhub.data.sources_files import check as check_data_path
from trainhub.data.sources_hf import check as check_hf_source
from trainhub.job import PLANNED_BACKENDS, Job
from trainhub.job.sizes import longest_sequence
from trainhub.yamlfile import JobError, Path_, Problem, read_yaml  # noqa: F401  (importable from here, as before)

# ----------------------------------------------------------------------------- 1. YAML with line numbers: trainhub/yamlfile.py


# ----------------------------------------------------------------------------- 2. --set overrides


def apply_sets(raw: dict, sets: list[str]) -> list[Problem]:
    """Apply `a.b.c=value` overrides in place; the value is parsed as YAML (`3`, `1e-4`, `true`, `[a, b]`)."""
    problems = []
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(f"--set {item}", "expected KEY=VALUE, e.g. train.max_steps=10"))
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str):  # shorthand `backend: native` grows into a mapping
                child = {"type": child}
            elif not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return problems


# ----------------------------------------------------------------------------- 3. validation


def validate(raw: dict, source: str = "<job>", lines: dict[Path_, int | Origin] | None = None,
             sets: list[str] | None = None) -> Job:
    try:
        return Job.model_validate(raw)
    except ValidationError as err:
        raise JobError([_problem(e, source, lines or {}, sets or []) for e in err.errors()]) from None


def _problem(error: dict, source: str, lines: dict[Path_, int], sets: list[str]) -> Problem:
    keys, parent = _walk(error["loc"])
    dotted = ".".join(str(k) for k in keys)
    where = _where(source, lines, keys, sets)
    kind = error["type"]
    if kind == "extra_forbidden":
        prefix = "".join(f"{k}." for k in keys[:-1])
        return Problem(where, f"unknown key '{dotted}'{_did_you_mean(keys[-1], parent, prefix)}")
    if kind == "union_tag_invalid":
        tag = error["ctx"]["tag"]
        expected = [t.strip(" '") for t in error["ctx"]["expected_tags"].split(",")]
        if keys and keys[-1] == "backend" and tag in PLANNED_BACKENDS:
            return Problem(where, f"backend '{tag}' is planned but not built yet; available: {', '.join(expected)}")
        close = difflib.get_close_matches(str(tag), expected, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        field = str(error["ctx"].get("discriminator", "")).strip("'")
        if field and field != "type":  # model.init.family, not model.init
            dotted = f"{dotted}.{field}" if dotted else field
        return Problem(where, f"{dotted or 'type'}: '{tag}' is not one of {', '.join(expected)}{hint}")
    message = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return Problem(where, f"missing required key '{dotted}'")
    if "input" in error and kind not in ("model_type", "dict_type", "value_error") and dotted:
        return Problem(where, f"{dotted} = {error['input']!r}: {message}")
    return Problem(where, f"{dotted}: {message}" if dotted else message)


def _where(source: str, lines: dict[Path_, int | Origin], keys: list, sets: list[str]) -> str:
    """An overridden key is reported at its --set, anything else at its line in the file it was
    written in (a composed job's `lines` hold an Origin, naming the file, for every key)."""
    for item in sets:
        key = item.partition("=")[0].strip()
        if ".".join(str(k) for k in keys).startswith(key):
            return f"--set {item}"
    for n in range(len(keys), 0, -1):
        line = lines.get(tuple(keys[:n]))
        if isinstance(line, Origin):
            return str(line)
        if line:
            return f"{source}:{line}"
    return source


def _did_you_mean(key: Any, parent: type[BaseModel] | None, prefix: str) -> str:
    if parent is None:
        return ""
    close = difflib.get_close_matches(str(key), list(parent.model_fields), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    if parent is not Job and key in Job.model_fields:
        return f"; {key} is a section of its own, at the job's top level (not under {prefix.rstrip('.')})"
    here = prefix.rstrip(".")
    elsewhere = sorted(_sections_with(str(key)))
    others = [s for s in elsewhere if s != here]
    if others and here in elsewhere:  # another member of this section's union takes it (optim.betas under muon)
        return (f"; with this {here}.type it belongs under {' or '.join(others)} (other {here}.type values take it "
                f"under {here} itself)")
    if others:
        return f"; it belongs under {' or '.join(others)}"
    return f"; known keys here: {', '.join(parent.model_fields)}"


def _walk(loc: tuple) -> tuple[list, type[BaseModel] | None]:
    """Follow a pydantic error location through the schema.

    Returns the key path as the user wrote it (discriminator tags that pydantic
    adds for unions are dropped) and the model holding the last key.
    """
    keys: list = []
    model: type[BaseModel] | None = Job
    current: Any = Job
    for part in loc:
        current = _optional_model(current)
        if isinstance(part, int):
            keys.append(part)
            current = _unwrap_list(current)
            continue
        if _is_model(current) and part not in current.model_fields and part in _union_models(current):
            continue  # the tag of a union with one member so far (pydantic's annotation is the bare model)
        if _is_model(current):
            model = current
            field = current.model_fields.get(part)
            keys.append(part)
            current = field.annotation if field else None
            continue
        options = _union_models(current)
        if options and part in options:  # a discriminator tag
            model = current = options[part]
            continue
        keys.append(part)
        current = None
    return keys, model


def _optional_model(tp: Any) -> Any:
    """`Architecture | None` -> Architecture; anything else unchanged."""
    models = [m for m in _args(tp) if _is_model(m)]
    if len(models) == 1 and not any(t in models[0].model_fields for t in TAGS):
        return models[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _args(tp: Any) -> tuple:
    if typing.get_origin(tp) is typing.Annotated:
        return _args(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for arg in typing.get_args(tp) for a in (_args(arg) or (arg,)))
    return ()


# The fields that discriminate the schema's unions (trainhub.job): `type` everywhere, `family` for model.init.
TAGS = ("type", "family")


def _union_models(tp: Any) -> dict[str, type[BaseModel]]:
    """{tag value: model} of a discriminated union (every value a member's Literal tag allows)."""
    members = _args(tp) or ((typing.get_args(tp)[0],) if typing.get_origin(tp) is typing.Annotated else (tp,))
    out = {}
    for m in members:
        tag = next((t for t in TAGS if _is_model(m) and t in m.model_fields), None)
        if tag is not None:
            for value in typing.get_args(m.model_fields[tag].annotation) or (m.model_fields[tag].default,):
                out[value] = m
    return out


def _unwrap_list(tp: Any) -> Any:
    for arg in (_args(tp) or (tp,)):
        if typing.get_origin(arg) is list:
            return typing.get_args(arg)[0]
    return None


def _sections_with(key: str, model: type[BaseModel] = Job, prefix: str = "") -> set[str]:
    """Dotted paths of the sections, at any depth, that define `key`."""
    found = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        subs = list(_union_models(field.annotation).values())
        single = _optional_model(field.annotation)
        if _is_model(single) and single not in subs:
            subs.append(single)
        for m in subs:
            if key in m.model_fields:
                found.add(path)
            found |= _sections_with(key, m, f"{path}.")
    return found


# ----------------------------------------------------------------------------- resolve and preflight


def load(path: str | Path, sets: list[str] | None = None, backend: str | None = None,
         notes: list[str] | None = None, screen=None) -> Job:
    """Read (with every `extends`), override, validate and resolve a job file. Raises JobError with every
    problem found, each at the file and line its key was written. `notes`, when given, receives what the
    user should know that is no problem (a path found relative to the job file). `screen`, when given, is
    called with the resolved job before preflight touches the file system (Job -> list[Problem]); its
    problems are raised instead (the job server refuses paths outside its allowed roots there)."""
    path = Path(path)
    raw, origins = compose(path)
    if backend is not None:  # before --set, so `--backend native --set backend.compile=true` keeps both
        current = raw.get("backend")
        current_type = current if isinstance(current, str) else (current or {}).get("type")
        if current_type != backend:
            raw["backend"] = {"type": backend}
    sets = list(sets or [])
    problems = apply_sets(raw, sets)
    if problems:
        raise JobError(problems)
    for item in sets:  # an overridden key is no longer the file's: its relative paths are the working directory's
        keys = tuple(item.partition("=")[0].strip().split("."))
        origins = {k: v for k, v in origins.items() if tuple(map(str, k[:len(keys)])) != keys}
    job = validate(raw, str(path), origins, sets=sets)
    job = resolve(job, origins=origins, notes=notes)
    problems = screen(job) if screen is not None else []
    if problems:
        raise JobError(problems)
    problems = preflight(job)
    if problems:
        raise JobError([_at_origin(p, str(path), origins, sets) for p in problems])
    return job


def _at_origin(problem: Problem, source: str, origins: dict[Path_, Origin], sets: list[str]) -> Problem:
    """preflight's `data.train[1]: file not found` at the file and line the key was written."""
    keys = [int(k) if k.isdigit() else k for k in problem.where.replace("[", ".").replace("]", "").split(".")]
    where = _where(source, origins, keys, sets) if problem.where else ""
    if not where or where == source:
        return problem
    return Problem(where, f"{problem.where}: {problem.message}")


def _origin(origins: dict[Path_, Origin] | None, keys) -> Origin | None:
    """The origin of `keys`, or of the nearest key above it that has one."""
    for n in range(len(keys), 0, -1):
        found = (origins or {}).get(tuple(keys[:n]))
        if isinstance(found, Origin):
            return found
    return None


def resolve(job: Job, cwd: Path | None = None, origins: dict[Path_, Origin] | None = None,
            notes: list[str] | None = None) -> Job:
    """Absolute paths for everything the job names. A relative path is taken from `cwd` (default: the
    current directory); where nothing is there but something is in the folder of the job file that wrote
    the key (`origins`, from compose), from that folder, with a line in `notes` saying so. output_dir
    is always taken from `cwd`. The result is what job.json records."""
    base = (cwd or Path.cwd()).resolve()

    def absolute(p: str, keys: Path_) -> str:
        here = (base / Path(p).expanduser()).resolve()
        if Path(p).expanduser().is_absolute() or _exists(here):
            return str(here)
        origin = _origin(origins, keys)
        if origin is not None and origin.folder != base and _exists(origin.folder / p):
            there = (origin.folder / p).resolve()
            if notes is not None:
                dotted = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
                notes.append(f"{origin}: {dotted}: {p} is not in the working directory ({base}); using {there}, "
                             f"relative to {origin.file}")
            return str(there)
        return str(here)

    def maybe_hub(p: str, keys: Path_) -> str:
        origin = _origin(origins, keys)
        in_folder = origin is not None and _exists(origin.folder / p)
        return absolute(p, keys) if _is_local(p, base) or in_folder else p

    def local_hf(name: str, keys: Path_) -> str:  # a dataset name is a Hub id unless written as a path
        return absolute(name, keys) if name.startswith((".", "/", "~")) else name

    def source(s, keys: Path_):
        if s.path is not None:
            return s.model_copy(update={"path": absolute(s.path, keys)})
        return s.model_copy(update={"hf": local_hf(s.hf, keys)})

    data = job.data.model_copy(update={split: [source(s, ("data", split, i)) for i, s in enumerate(sources)]
                                       for split, sources in (("train", job.data.train), ("eval", job.data.eval))})
    model = job.model
    if model.path is not None:
        model = model.model_copy(update={"path": maybe_hub(model.path, ("model", "path"))})
    elif model.init is not None and model.init.tokenizer.type == "path":
        keys = ("model", "init", "tokenizer", "path")
        tok = model.init.tokenizer.model_copy(update={"path": maybe_hub(model.init.tokenizer.path, keys)})
        model = model.model_copy(update={"init": model.init.model_copy(update={"tokenizer": tok})})
    output_dir = str((base / job.run_dir()).resolve())
    update = {"data": data, "model": model, "output_dir": output_dir}
    if getattr(job.backend, "repo", None) is not None:
        update["backend"] = job.backend.model_copy(update={"repo": absolute(job.backend.repo, ("backend", "repo"))})
    if job.method.type == "grpo":  # a reward in a file is found from where train runs, not the run folder
        rewards = [r.model_copy(update={"function": _reward_path(r.function, absolute, ("method", "rewards", i))})
                   for i, r in enumerate(job.method.rewards)]
        update["method"] = job.method.model_copy(update={"rewards": rewards})
    return job.model_copy(update=update)


def _reward_path(function: str, absolute, keys: Path_) -> str:
    target, _, name = function.rpartition(":")
    return f"{absolute(target, keys)}:{name}" if target.endswith(".py") else function


def _exists(path: Path) -> bool:
    """Something is at `path` (a glob: some file matches)."""
    return bool(glob.glob(str(path), recursive=True)) if glob.has_magic(str(path)) else path.exists()


def _is_local(p: str, base: Path) -> bool:
    """A hub id looks like `org/name`; anything that exists, or starts with `.`, `/` or `~`, is a path."""
    if p.startswith((".", "/", "~")) or (base / p).exists():
        return True
    return p.count("/") != 1


def preflight(job: Job) -> list[Problem]:
    """Checks that need the file system: every data path names readable files, every named folder exists,
    the run folder can be created and written, and an sft job's tokenizer can render conversations."""
    problems = []
    for key, sources in (("data.train", job.data.train), ("data.eval", job.data.eval)):
        for i, source in enumerate(sources):
            if source.hf is not None:
                problem = check_hf_source(source)
            else:
                problem = check_data_path(source.path, job.data.format)
            if problem:
                problems.append(Problem(f"{key}[{i}]", problem))
    model_path = Path(job.model.path) if job.model.path is not None and job.model.path.startswith("/") else None
    ckpt_file = job.backend.type == "nanogpt" and model_path is not None and model_path.is_file()  # a ckpt.pt
    if model_path is not None and not model_path.is_dir() and not ckpt_file:
        problems.append(Problem("model.path", f"model folder not found: {job.model.path}"))
    init = job.model.init
    if init is not None and init.tokenizer.type == "path" and init.tokenizer.path.startswith("/"):
        if not Path(init.tokenizer.path).is_dir():
            problems.append(Problem("model.init.tokenizer.path", f"tokenizer folder not found: {init.tokenizer.path}"))
    if model_path is not None and model_path.is_dir():
        problems += _check_positions(job, model_path)
        problems += _check_chat_template(job, model_path)
    problem = output_dir_problem(Path(job.output_dir))
    if problem:
        problems.append(Problem("output_dir", problem))
    if job.export.gguf:
        from trainhub.export.main import job_problems

        problems += [Problem(key, message) for key, message in job_problems(job, model_path)]
    return problems


def output_dir_problem(path: Path) -> str | None:
    """Why the run folder `path` cannot be created or written, found by trying (a folder, then a file, made
    and removed again in the deepest folder that exists), or None."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{path} cannot be created: {existing} is a file, not a folder"
    try:
        if existing == path:
            fd, probe = tempfile.mkstemp(prefix=".trainhub-probe-", dir=path)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".trainhub-probe-", dir=existing))
    except OSError as err:
        verb = "written" if existing == path else f"created (in {existing})"
        return f"{path} cannot be {verb}: {err.strerror or err}"
    return None


def _check_chat_template(job: Job, model_path: Path) -> list[Problem]:
    """sft renders conversations with the tokenizer's chat template: one the model folder lacks, with no
    data.template, would stop the run after loading everything."""
    if job.method.type != "sft" or job.data.template is not None:
        return []
    if not (model_path / "tokenizer_config.json").is_file():
        return []  # not an HF model folder (a nanoGPT checkpoint): the backend says what it misses
    try:
        config = json.loads((model_path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return []
    if config.get("chat_template") or any((model_path / f).is_file() for f in ("chat_template.jinja",
                                                                              "chat_template.json")):
        return []
    from trainhub.data.templates import TEMPLATES

    return [Problem("model.path", f"the tokenizer in {model_path} has no chat template to render conversations "
                                  f"with; set data.template to one of: {', '.join(TEMPLATES)}")]


# Models whose positions are a learned table (config key): a longer sequence is an index error (a device-side
# assert on a GPU) at the first step. Rotary models may run past max_position_embeddings on purpose.
ABSOLUTE_POSITIONS = {"gpt2": "n_positions", "gpt_bigcode": "n_positions", "gpt_neo": "max_position_embeddings",
                      "opt": "max_position_embeddings"}


def _check_positions(job: Job, model_path: Path) -> list[Problem]:
    """The longest sequence the job feeds the model (GRPO: prompt + completion) must fit a learned position table."""
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return []  # not an HF model folder: the backend says what it misses
    key = ABSOLUTE_POSITIONS.get(config.get("model_type", ""))
    positions = config.get(key) if key else None
    longest = longest_sequence(job)
    extra = longest - job.data.max_length
    if not isinstance(positions, int) or longest <= positions:
        return []
    what = f"data.max_length {job.data.max_length} + method.max_new_tokens {extra} = {longest} tokens" if extra \
        else f"data.max_length is {longest} tokens"
    return [Problem("data.max_length", f"{what}, but {model_path} has {positions} positions "
                                       f"(config.json {key}: a learned position table, it cannot run longer); "
                                       f"lower data.max_length{' or method.max_new_tokens' if extra else ''}")]
