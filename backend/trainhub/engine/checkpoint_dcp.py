"""Checkpoints of a run with a process group (distributed.strategy ddp or fsdp2): the weights and optimizer
state through torch.distributed.checkpoint (DCP), committed as every checkpoint is (engine/checkpoint.py).

Layout of `checkpoints/step-NNNNNNNN/` (docs/checkpoints.md):

    dcp/            DCP's files: each rank writes its own shards (FSDP2) or its share of the replicated
                    tensors (DDP, written once), plus `.metadata`; keys are the model's parameter names
                    (`model.…`) and the optimizer's state by parameter name (`optim.…`)
    rng.pt          rank 0's torch generator states (every rank holds the same ones: all start from the seed)
    state.json, job.json    as for every checkpoint

Saving: every rank writes into one staging folder (`.tmp-dcp-step-N`, emptied by rank 0 first), then rank
0 alone moves it into the checkpoint's temporary folder and commits it (fsync, rename, `latest`,
retention); the others wait for that. Several nodes need the run folder on a shared filesystem.

Loading reshards: DCP reads the saved shards into whatever this run's processes hold, so a checkpoint of 2
processes resumes on 1 or on 4, and a process without a group (strategy single) reads it too. The other way,
a single-process checkpoint (safetensors + optimizer.pt) resumes under ddp (every rank loads the whole
thing) but not under fsdp2, which is refused by name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from trainhub.engine.checkpoint import RNG, _host_rng, _torch_rng, commit_checkpoint, restore_rng
from trainhub.engine.dist import Dist
from trainhub.resume import CheckpointError, read_state

DCP = "dcp"


def is_sharded(path: Path) -> bool:
    return (Path(path) / DCP).is_dir()


def _state_dicts(model, optimizer):
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(model, optimizer)


def save_sharded(run_dir: Path, step: int, model, optimizer, state: dict, job: dict, keep_last: int,
                 is_best: bool, d: Dist) -> Path | None:
    """Every rank calls this; returns the committed folder on rank 0, None on the others."""
    import torch.distributed.checkpoint as dcp

    root = run_dir / "checkpoints"
    staging = root / f".tmp-dcp-step-{step:08d}"
    if d.main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    d.barrier()
    msd, osd = _state_dicts(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(staging))
    d.barrier()
    final = None
    if d.main:
        def write(tmp: Path) -> None:
            os.replace(staging, tmp / DCP)
            torch.save(_torch_rng(), tmp / RNG)

        final = commit_checkpoint(run_dir, step, write, {**state, **_host_rng(), "world": d.world}, job,
                                  keep_last, is_best)
    d.barrier()
    return final


def load_sharded(path: Path, model, optimizer) -> dict:
    """Weights, optimizer state and RNG from a DCP checkpoint, resharded onto this run's processes; returns
    its state.json."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    msd, osd = _state_dicts(model, optimizer)
    _add_lazy_state(osd, msd, dcp.FileSystemReader(str(Path(path) / DCP)).read_metadata())
    loaded = {"model": msd, "optim": osd}
    try:
        dcp.load(loaded, checkpoint_id=str(Path(path) / DCP))
    except Exception as err:  # DCP names the missing or misshapen key
        raise CheckpointError(f"{path}: the sharded weights do not fit the model: {err}") from err
    set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    state, _job = read_state(Path(path))
    restore_rng(Path(path), state)
    return state


def _add_lazy_state(osd: dict, msd: dict, metadata) -> None:
    """DCP loads into the template it is given, and a fresh optimizer's state dict lacks what an optimizer creates
    at its first step only (schedule-free's z and exp_avg_sq): give the template a slot for every per-parameter
    tensor the checkpoint holds, shaped (and sharded) as its parameter, or a scalar."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    for key, meta in metadata.state_dict_metadata.items():
        if not key.startswith("optim.state.") or not isinstance(meta, TensorStorageMetadata):
            continue
        fqn, _, name = key[len("optim.state."):].rpartition(".")
        slots = osd["state"].setdefault(fqn, {})
        if name in slots or fqn not in msd:
            continue
        param = msd[fqn]
        if tuple(meta.size) == tuple(param.shape):
            slots[name] = torch.zeros_like(param, dtype=meta.properties.dtype)
        elif len(meta.size) == 0:
            slots[name] = torch.zeros((), dtype=meta.properties.dtype)


def full_weights(model) -> dict:
    """The whole model's weights on the CPU, gathered from every rank's shards (every rank calls this)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
