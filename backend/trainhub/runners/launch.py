"""How a job's processes are started: the torchrun (and srun) command line in front of a child's module.

`distributed.nproc_per_node` x `distributed.nnodes` processes: one node runs
`torchrun --standalone --nproc_per_node N -m MODULE ...`; several meet at a c10d rendezvous
(`--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID`), and with launcher srun one
torchrun per node of a SLURM allocation is started by `srun`. torchrun is PyTorch's own launcher
(`python -m torch.distributed.run`, so it is the torch of the environment that runs the child); when a
process fails it stops the others and exits non-zero, so a dead rank takes the job down.

Pure: the native runner (and `trainhub plan`) and nanoGPT's and LLaMA-Factory's runners build their
argv here.
"""

from __future__ import annotations


def torchrun_argv(python: str, dist, job_name: str) -> list[str]:
    """`python -m torch.distributed.run ...options` for the job's `distributed` section; the caller appends
    `-m module args` or a script and its args."""
    argv = [python, "-m", "torch.distributed.run", f"--nproc_per_node={dist.nproc_per_node}"]
    if dist.nnodes == 1:
        argv.insert(3, "--standalone")
    else:
        argv += [f"--nnodes={dist.nnodes}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={dist.rendezvous.endpoint}", f"--rdzv-id={dist.rendezvous.id or job_name}"]
    if dist.launcher == "srun":
        argv = ["srun", f"--nodes={dist.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *argv]
    return argv


def module_under_torchrun(python: str, dist, job_name: str, module: str, args: list[str]) -> list[str]:
    """The child's `python -m module args`, started by torchrun when the job asks for several processes."""
    if dist.world == 1:
        return [python, "-m", module, *args]
    return [*torchrun_argv(python, dist, job_name), "-m", module, *args]
