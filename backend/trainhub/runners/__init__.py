"""The backend registry: a closed dict of runners, and `choose` for `backend: auto`.

Each backend is a package of the same shape, runners/<name>/{runner.py, translate.py, child.py}
(runners/base.py says what each holds); the registry imports only the runner.py modules, which import
no torch and no upstream, so the hub stays light.
"""

from __future__ import annotations

from trainhub.host import Host
from trainhub.job import PLANNED_BACKENDS, Job
from trainhub.jobfile import JobError, Problem
from trainhub.runners.base import Launch, Runner
from trainhub.runners.llamafactory.runner import LlamaFactoryRunner
from trainhub.runners.nanogpt.runner import NanoGPTRunner
from trainhub.runners.native.runner import NativeRunner
from trainhub.runners.speed import prefer
from trainhub.runners.trl.runner import TrlRunner
from trainhub.runners.unsloth.runner import UnslothRunner

# In order of preference for `backend: auto`.
RUNNERS: dict[str, Runner] = {"native": NativeRunner(), "trl": TrlRunner(), "unsloth": UnslothRunner(),
                              "llamafactory": LlamaFactoryRunner(), "nanogpt": NanoGPTRunner()}

__all__ = ["Launch", "RUNNERS", "Runner", "choose", "get_runner"]


def get_runner(name: str) -> Runner:
    if name in RUNNERS:
        return RUNNERS[name]
    if name in PLANNED_BACKENDS:
        raise JobError([Problem("backend", f"backend '{name}' is planned but not built yet; "
                                           f"available: {', '.join(RUNNERS)}")])
    raise JobError([Problem("backend", f"unknown backend '{name}'; available: {', '.join(RUNNERS)}")])


def choose(job: Job, host: Host) -> tuple[Runner, list[str]]:
    """The runner for this job, and one line per backend saying why it was or was not picked.

    A named backend must pass its own check; `auto` takes, among the ready backends whose check finds no
    problem, the fastest measured on this GPU class for this kind of job where measurements compare it with
    the registry's first choice (runners/speed.py), else the first in the registry's order of preference.
    """
    if job.backend.type != "auto":
        runner = get_runner(job.backend.type)
        problems = runner.check(job, host)
        if problems:
            raise JobError(problems)
        return runner, [f"{runner.name}: named by the job"]
    problems = {name: runner.check(job, host) for name, runner in RUNNERS.items()}
    usable = [name for name, found in problems.items() if not found]
    if not usable:
        reasons = [f"{name}: not usable: " + "; ".join(str(p) for p in found) for name, found in problems.items()]
        reasons += [f"{name}: planned, not built yet" for name in PLANNED_BACKENDS]
        raise JobError([Problem("backend", "no backend can run this job:\n  " + "\n  ".join(reasons))])
    picked, why = prefer(job, host, usable)
    reasons = []
    for name, found in problems.items():
        if found:
            reasons.append(f"{name}: not usable: " + "; ".join(str(p) for p in found))
        elif name == picked:
            reasons.append(f"{name}: picked: supports method {job.method.type}, adapter {job.adapter.type} "
                           f"on {host.describe()}; {why}")
        else:
            reasons.append(f"{name}: also usable")
    reasons += [f"{name}: planned, not built yet" for name in PLANNED_BACKENDS]
    return RUNNERS[picked], reasons
