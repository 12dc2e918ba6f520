"""An sbatch script for a job on several nodes of a SLURM cluster: `trainhub slurm --config job.yaml
--nodes N --gpus-per-node G`.

The script runs one `trainhub train` (one hub, on the allocation's first node), which starts the native
engine as `srun torchrun ...`: srun puts one torchrun on every node, and the torchruns meet at a c10d
rendezvous on the first node (its name from `scontrol show hostnames`, the port chosen here, the id the
SLURM job's), each starting G engine processes. `--kill-on-bad-exit` ends every node's step when one fails.
The settings reach the job through `--set distributed...`, so the job file stays the same on a laptop and
on the cluster; the run folder must be on a filesystem every node sees (checkpoints are written by every
rank, engine/checkpoint_dcp.py).

`sbatch_script` is pure: unit tests read the script it writes. `submit` runs sbatch;
tests/integration/test_slurm_cluster.py submits a script to a real single-node SLURM that it starts (Debian's
slurm-wlm), with `--cpu` (processes on CPUs, gloo).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")
"""SLURM's --time forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""


class SlurmError(ValueError):
    pass


def submit(script: Path) -> str:
    """`sbatch SCRIPT`; returns sbatch's line (the job id), or raises SlurmError with what sbatch said."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None:
        raise SlurmError("--submit needs SLURM's sbatch on the PATH; none here (the script is written: "
                         f"{script})")
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    if done.returncode:
        raise SlurmError(f"sbatch {script} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Allocation:
    nodes: int
    gpus_per_node: int
    partition: str | None = None
    time: str | None = None
    port: int = 29500
    cpu: bool = False
    """Nodes without GPUs: gpus_per_node processes per node on CPUs (gloo), no GPUs asked of SLURM."""


def sbatch_script(job, config: Path, sets: list[str], alloc: Allocation, python: str, cwd: Path) -> str:
    """The script's text. `sets`: the user's own --set overrides, passed on before trainhub's."""
    if alloc.nodes < 1 or alloc.gpus_per_node < 1:
        raise SlurmError("--nodes and --gpus-per-node must be at least 1")
    if alloc.nodes * alloc.gpus_per_node < 2:
        raise SlurmError("one process on one node needs no SLURM script: run `train --config ...` in an "
                         "allocation (srun/salloc), or ask for more --nodes or --gpus-per-node")
    if alloc.time is not None and not TIME.match(alloc.time):
        raise SlurmError(f"--time '{alloc.time}' is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)")
    if not 1 <= alloc.port <= 65535:
        raise SlurmError(f"--port {alloc.port} is not a TCP port")
    if job.backend.type not in ("native", "auto"):  # auto: the other backends refuse several processes
        raise SlurmError(f"trainhub slurm launches the native engine across nodes; backend {job.backend.type} "
                         f"is not (yet) launched on several nodes (set backend: native)")
    ask = f"#SBATCH --cpus-per-task={alloc.gpus_per_node}" if alloc.cpu else \
        f"#SBATCH --gpus-per-node={alloc.gpus_per_node}"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job.name}", f"#SBATCH --nodes={alloc.nodes}",
             "#SBATCH --ntasks-per-node=1", ask,
             f"#SBATCH --output={cwd}/slurm-{job.name}-%j.out"]  # SLURM opens it before the script runs
    if alloc.partition:
        lines.append(f"#SBATCH --partition={alloc.partition}")
    if alloc.time:
        lines.append(f"#SBATCH --time={alloc.time}")
    overrides = [*sets, "distributed.launcher=srun", f"distributed.nnodes={alloc.nodes}",
                 f"distributed.nproc_per_node={alloc.gpus_per_node}",
                 f"distributed.rendezvous.endpoint=${{head}}:{alloc.port}",
                 "distributed.rendezvous.id=slurm-${SLURM_JOB_ID}"]
    command = [f"{shlex.quote(python)} -m trainhub train --config {shlex.quote(str(Path(config).resolve()))}"]
    command += ["--set " + (f'"{item}"' if "$" in item else shlex.quote(item)) for item in overrides]
    lines += [
        "# written by `trainhub slurm`: one trainhub on the first node; it runs srun torchrun on every node",
        "set -euo pipefail",
        f"cd {shlex.quote(str(cwd))}",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        " \\\n    ".join(command),
    ]
    return "\n".join(lines) + "\n"
