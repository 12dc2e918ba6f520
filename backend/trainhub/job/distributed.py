"""The `distributed:` section: how many processes train the job, and how they share the model.

PyTorch's own tools do the work: torchrun starts the processes (one per GPU, `nproc_per_node` on each of
`nnodes` machines, meeting at a c10d rendezvous), DistributedDataParallel replicates the model, FSDP2
(`fully_shard`) shards it, torch.distributed.checkpoint saves it in shards. `strategy: auto` is `single`
for one process and `ddp` for several. docs/distributed.md shows the commands.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainhub.job.base import Section

STRATEGIES = ("auto", "single", "ddp", "fsdp2")


class FSDP2Options(Section):
    reshard_after_forward: bool = True
    """Free each block's gathered weights after its forward and gather them again for the backward (less
    memory, one more all-gather per block); false keeps them until the backward (ZeRO-2-like)."""
    param_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Mixed-precision policy: the dtype the weights are gathered and computed in; null: as stored (model.dtype).
    The sharded master weights and the optimizer stay in model.dtype."""
    reduce_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Mixed-precision policy: the dtype gradients are reduce-scattered in; null: param_dtype."""
    cpu_offload: bool = False
    """Keep the sharded weights, gradients and optimizer state in CPU memory, moved to the GPU per block
    (FSDP2's CPUOffloadPolicy; the optimizer step runs on the CPU). GPU only."""


class Rendezvous(Section):
    endpoint: str | None = None
    """host:port where the processes of several nodes meet (torchrun --rdzv-endpoint, c10d backend); the
    host is one of the nodes. Required when nnodes > 1; one node needs none (torchrun --standalone)."""
    id: str | None = None
    """The rendezvous id every node passes (torchrun --rdzv-id); null: the job's name."""


class DistributedSection(Section):
    strategy: Literal["auto", "single", "ddp", "fsdp2"] = "auto"
    """single: one process, no process group; ddp: every process holds the whole model and averages gradients
    (DistributedDataParallel); fsdp2: weights, gradients and optimizer state sharded across processes
    (FSDP2, fully_shard per block); auto: single for one process, ddp for several. Backend native; the other
    backends take nproc_per_node their own way (docs/distributed.md)."""
    nproc_per_node: int = Field(1, ge=1, le=1024)
    """Processes per node, one per GPU (on CPU: gloo processes). More than one: `train` starts the native
    engine through torchrun. The global batch is micro_batch_size x grad_accum x nproc_per_node x nnodes."""
    nnodes: int = Field(1, ge=1, le=100_000)
    """Machines. More than one needs rendezvous.endpoint; `trainhub slurm` writes an sbatch script for it."""
    launcher: Literal["torchrun", "srun"] = "torchrun"
    """torchrun: `train` runs torchrun on this node (start the same command on every node); srun: `train`
    runs `srun torchrun ...`, one torchrun per node of the SLURM allocation, from one `train` (the script
    `trainhub slurm` writes)."""
    rendezvous: Rendezvous = Rendezvous()
    """Where the nodes' processes meet (nnodes > 1)."""
    fsdp2: FSDP2Options = FSDP2Options()
    """FSDP2's options; set only with strategy fsdp2."""
    timeout_s: int = Field(600, ge=10, le=86_400)
    """Seconds a collective may wait for the other processes before the run fails (a dead or stuck rank
    takes the job down instead of hanging it)."""

    @property
    def world(self) -> int:
        """Processes in all: nproc_per_node x nnodes."""
        return self.nproc_per_node * self.nnodes

    @property
    def resolved(self) -> str:
        """single, ddp or fsdp2: what auto means for this many processes."""
        if self.strategy != "auto":
            return self.strategy
        return "single" if self.world == 1 else "ddp"

    @model_validator(mode="after")
    def _consistent(self) -> DistributedSection:
        if self.strategy == "single" and self.world > 1:
            raise ValueError(f"distributed.strategy single is one process, but nproc_per_node x nnodes = "
                             f"{self.world}; use ddp or fsdp2 (or auto)")
        if self.strategy != "fsdp2" and self.fsdp2 != FSDP2Options():
            raise ValueError(f"distributed.fsdp2 options apply to strategy fsdp2 only, not {self.strategy}")
        if self.nnodes > 1 and self.rendezvous.endpoint is None:
            raise ValueError(f"distributed.nnodes {self.nnodes} needs distributed.rendezvous.endpoint (host:port "
                             f"of one of the nodes), or `trainhub slurm` to write a SLURM script that sets it")
        endpoint = self.rendezvous.endpoint
        if endpoint is not None and (":" not in endpoint or not endpoint.rsplit(":", 1)[1].isdigit()):
            raise ValueError(f"distributed.rendezvous.endpoint '{endpoint}' is not host:port")
        if self.launcher == "srun" and self.world == 1:
            raise ValueError("distributed.launcher srun starts torchrun on several processes; set nproc_per_node "
                             "or nnodes above 1")
        return self
