"""Admitting a submitted job: the checks `trainhub validate` makes, then the server's own.

The job text (YAML, or JSON, which YAML reads too) is written to a scratch folder and loaded with
trainhub.jobfile.load, exactly as `train --config` loads a file, then the backend is chosen as `train`
chooses it; every problem comes back as the line `trainhub validate` prints (the scratch file shown
under the name the client gave). Relative paths are taken from the server's working directory.

What a shared server adds, because the submitter is not the machine's owner (the paths are checked
as soon as they are resolved, before preflight looks for a file or probes the run folder, so a refused
path is never opened):
- paths: every file or folder the resolved job names (data, model, tokenizer, output_dir, a nanoGPT
  checkout, a reward file, and any other absolute path in it) must lie, after symlinks are followed,
  under one of the allowed roots (`--allow`), so a request can neither read nor write elsewhere;
  `extends` may name the shipped presets, or files under the allowed roots;
- code: a reward function other than trainhub's built-ins, `model.trust_remote_code`, and a nanoGPT
  checkout named by the job all run code the submitter chose, refused unless the server was started
  with `--allow-code`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from trainhub import host as host_mod
from trainhub.job import Job
from trainhub.jobfile import JobError, Problem, load
from trainhub.runfolder import progress
from trainhub.runners import choose

BUILTIN_REWARDS = "trainhub.rewards:"


@dataclass
class Policy:
    roots: list[Path]
    """Allowed roots, resolved."""
    allow_code: bool = False


@dataclass
class Admitted:
    job: Job
    backend: str
    notes: list[str]


def admit(text: str, filename: str, policy: Policy, sets: list[str] | None = None,
          backend: str | None = None) -> Admitted:
    """The resolved job and the backend that will run it; raises JobError with every problem found."""
    name = Path(filename or "job.yaml").name
    if not name.endswith((".yaml", ".yml", ".json")):
        name += ".yaml"
    _check_extends(text, name, policy)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="trainhub-submit-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        try:
            job = load(path, sets or [], backend, notes=notes, screen=lambda j: path_problems(j, policy))
            runner, _ = choose(job, host_mod.detect())
        except JobError as err:
            raise JobError([_shown(p, str(path), name) for p in err.problems]) from None
        notes = [n.replace(str(path), name) for n in notes]
    problems = slot_problems(job) + code_problems(job, runner.name, policy)
    if problems:
        raise JobError(problems)
    return Admitted(job, runner.name, notes)


def run_folder_problem(job: Job) -> Problem | None:
    """A run folder already holding progress is `train`'s refusal too; said at submission, not at launch."""
    held = progress(Path(job.output_dir))
    if held:
        return Problem("output_dir", f"{job.output_dir} already holds a run ({held}); submit with another "
                                     f"output_dir, or delete that run first")
    return None


def _shown(problem: Problem, path: str, name: str) -> Problem:
    return Problem(problem.where.replace(path, name), problem.message.replace(path, name))


def _check_extends(text: str, name: str, policy: Policy) -> None:
    """`extends` may name presets, or .yaml files under the allowed roots (read before anything is opened)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # load() reports it, with its line
    if not isinstance(raw, dict) or raw.get("extends") is None:
        return
    entries = raw["extends"] if isinstance(raw["extends"], list) else [raw["extends"]]
    problems = []
    for entry in entries:
        if not isinstance(entry, str):
            continue  # load() says what an entry must be
        if not entry.strip().endswith((".yaml", ".yml")) and ("/" in entry or "\\" in entry or entry.startswith(".")):
            problems.append(Problem(f"{name}: extends", f"{entry}: a preset is named without a path"))
        elif entry.strip().endswith((".yaml", ".yml")):
            target = Path(entry.strip()).expanduser()
            if not target.is_absolute():
                problems.append(Problem(f"{name}: extends", f"{entry}: a submitted job has no folder of its own; "
                                                            f"name a preset or an absolute path under the allowed roots"))
            elif not _under(target, policy.roots):
                problems.append(Problem(f"{name}: extends", _outside(entry, policy)))
    if problems:
        raise JobError(problems)


def path_problems(job: Job, policy: Policy) -> list[Problem]:
    """Every absolute path in the resolved job (resolve() makes each path the job names absolute; a hub id
    stays a name) must lie under an allowed root."""
    problems = []
    for key, value in _strings(job.model_dump(mode="json")):
        path = value.rpartition(":")[0] if key.endswith(".function") and ".py:" in value else value
        if path.startswith(("/", "~")) and not _under(Path(path).expanduser(), policy.roots):
            problems.append(Problem(key, _outside(path, policy)))
    return problems


def slot_problems(job: Job) -> list[Problem]:
    """A job runs on one slot: one GPU (or the CPU)."""
    processes = getattr(job.backend, "processes", None)
    if processes is not None and processes > 1:
        return [Problem("backend.processes", f"{processes}: the server runs each job on one GPU slot; a job on "
                                             f"several GPUs is not supported by the server yet (run it with train)")]
    return []


def code_problems(job: Job, backend: str, policy: Policy) -> list[Problem]:
    if policy.allow_code:
        return []
    why = "runs code the submitter chose; this server runs such jobs only when started with --allow-code"
    problems = []
    if job.method.type == "grpo":
        for i, reward in enumerate(job.method.rewards):
            if not reward.function.startswith(BUILTIN_REWARDS):
                problems.append(Problem(f"method.rewards[{i}].function", f"{reward.function} {why} (the built-in "
                                                                           f"{BUILTIN_REWARDS}* rewards need no flag)"))
    if job.model.trust_remote_code:
        problems.append(Problem("model.trust_remote_code", f"true {why}"))
    if backend == "nanogpt" and getattr(job.backend, "repo", None) is not None:
        problems.append(Problem("backend.repo", f"a nanoGPT checkout's train.py {why} (or set $NANOGPT_DIR "
                                                f"for the server and leave backend.repo out)"))
    return problems


def _strings(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{prefix}[{i}]")
    elif isinstance(node, str):
        yield prefix, node


def _under(path: Path, roots: list[Path]) -> bool:
    real = path.resolve()
    return any(real == root or real.is_relative_to(root) for root in roots)


def _outside(path: str, policy: Policy) -> str:
    return (f"{path} is outside the folders this server may use ({', '.join(map(str, policy.roots))}); "
            f"start it with --allow PATH to add one")


def parse_json_or_yaml(body: bytes) -> str:
    """The request body as text; JSON is turned into YAML so that problems carry line numbers too."""
    text = body.decode("utf-8")
    if text.lstrip().startswith("{"):
        try:
            return yaml.safe_dump(json.loads(text), sort_keys=False)
        except ValueError:
            pass  # YAML flow syntax, or broken JSON: load() says which line
    return text
