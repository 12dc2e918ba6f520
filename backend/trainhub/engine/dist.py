"""The process group: who this process is (rank, world), its device, and the few collectives the loop uses.

torchrun starts one engine process per device and tells each its place through the environment (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT); `start` joins the group those name (NCCL on GPUs, gloo on CPU)
and binds the process to its GPU before anything touches CUDA. Strategy ddp or fsdp2 in a single process
(no torchrun) gets a group of one over an in-memory store, so FSDP2 runs the same code path on one GPU.
Strategy single starts no group at all: every collective here is then the identity.

Every rank runs the same program; the loop asks `main` only where one process must act alone (writing
rows, committing a checkpoint, writing final/), and the collectives below are the only points where the
ranks wait for each other.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    strategy: str
    """single, ddp or fsdp2 (auto resolved for the world)."""
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether a process group is up (ddp and fsdp2, even of one process)."""
        return self.strategy != "single"

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks, in place (the identity for one process)."""
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's `values`, in rank order: the per-rank facts of a train row (memory, step time)."""
        if self.world == 1:
            return [values]
        out: list = [None] * self.world
        dist.all_gather_object(out, values)
        return out

    def any(self, flag: bool) -> bool:
        """Whether any rank's flag is set (a stop request every rank must agree on)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())  # sync

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (training the tokenizer, filling the data cache), the others after it,
        reading what it wrote."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


def _device() -> torch.device:
    """Where this rank's collectives run: its GPU (NCCL), or the CPU (gloo)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world) as torchrun sets them; (0, 0, 1) outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")))


class DistError(RuntimeError):
    pass


def start(section) -> Dist:
    """Join the process group the job's `distributed` section asks for; the identity for strategy single."""
    rank, local_rank, world = env_world()
    if world != section.world:
        raise DistError(f"distributed: the job asks for {section.world} processes (nproc_per_node "
                        f"{section.nproc_per_node} x nnodes {section.nnodes}) but WORLD_SIZE is {world}")
    strategy = section.resolved
    if strategy == "single":
        return Dist("single")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)  # before any CUDA work: NCCL binds to the current device
    backend = "nccl" if cuda else "gloo"
    timeout = timedelta(seconds=section.timeout_s)
    if "MASTER_ADDR" in os.environ:  # torchrun
        dist.init_process_group(backend, timeout=timeout)
    else:  # one process, no torchrun: a group of one
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    return Dist(strategy, rank, local_rank, world)


def close(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()
