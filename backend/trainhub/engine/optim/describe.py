"""What `trainhub plan` shows of the optimizer: which parameters went to which optimizer, at what rates.

`describe_groups(job)` builds the job's model on the meta device (shapes only: no weights read, no memory),
splits it by role and builds the job's optimizer over it exactly as the run will, then describes each param
group: role, the algorithm that steps it, peak learning rate (optim.lr x the group's multiplier; the
schedule scales all of them together), weight decay, and which tensors it holds. `describe_optimizer` does
the same for an optimizer already built.

The hub imports no torch, so `trainhub plan` asks the engine's own process for these lines:
`python -m trainhub.engine describe` (engine/__main__.py) reads the resolved job as JSON on stdin, as the
run's child reads job.json, and `main` answers one JSON object on stdout: {"lines": [...]} or, when the
model cannot be built from what is on disk, {"error": "one line naming the file or key"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from trainhub.job import Job

SHOWN_NAMES = 3


def describe_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, optim_type: str) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    lines = []
    for group in optimizer.param_groups:
        params = group["params"]
        shown = [names.get(id(p), "?") for p in params[:SHOWN_NAMES]]
        more = f", +{len(params) - SHOWN_NAMES} more" if len(params) > SHOWN_NAMES else ""
        lines.append(f"{group['role']:<6} {group.get('algo', optim_type):<19} lr {group['lr']:.3g} "
                     f"(x{group['lr_mult']:.3g})  weight_decay {group.get('weight_decay', 0.0):.3g}  "
                     f"{len(params)} tensors, {sum(p.numel() for p in params):,} params: {', '.join(shown)}{more}")
    return lines


def describe_groups(job: Job) -> list[str]:
    """One line per param group of the job's optimizer over the job's model (module docstring)."""
    from trainhub.engine.optim import build_optimizer

    model = _meta_model(job)
    optimizer = build_optimizer(job.optim, model, torch.device("meta"))
    head = (f"optim {job.optim.type}: peak lr {job.optim.lr:.3g}, each group at peak x its multiplier, "
            f"shaped by the schedule ({job.schedule.decay}, warmup {job.schedule.warmup_steps} steps)")
    return [head, *("  " + line for line in describe_optimizer(optimizer, model, job.optim.type))]


class _Vocab:
    """Just what build_model reads of a tokenizer: its size and special ids."""

    def __init__(self, size: int):
        self.size, self.pad_token_id, self.eos_token_id, self.bos_token_id = size, 0, 1, 2

    def __len__(self) -> int:
        return self.size


def _meta_model(job: Job) -> torch.nn.Module:
    from trainhub.engine.models import build_model

    init = job.model.init
    if init is not None and init.tokenizer.type == "train":
        with torch.device("meta"):
            return build_model(job, _Vocab(init.tokenizer.vocab_size))
    if init is not None:  # an existing tokenizer sets the size: read it (small), build on meta
        from trainhub.data.tokenizer import load_tokenizer

        try:
            tokenizer = load_tokenizer(init.tokenizer.path, job.model.trust_remote_code)
        except (OSError, ValueError) as err:
            raise DescribeError(f"model.init.tokenizer.path: cannot read the tokenizer {init.tokenizer.path}: "
                                f"{_first_line(err)}") from None
        with torch.device("meta"):
            return build_model(job, tokenizer)
    # imported here only: describing a model built from model.init skips transformers (~2 s of CPU)
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(job.model.path, trust_remote_code=job.model.trust_remote_code)
    except (OSError, ValueError) as err:
        where = Path(job.model.path) / "config.json" if Path(job.model.path).is_dir() else job.model.path
        raise DescribeError(f"model.path: cannot read the model config {where}: {_first_line(err)}") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=job.model.trust_remote_code)
    if job.adapter.type in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        a = job.adapter
        model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout,
                                                 target_modules=a.targets, task_type="CAUSAL_LM", bias="none"))
    return model


class DescribeError(ValueError):
    """The model could not be built from the job: the message names the key and the file."""


def _first_line(err: Exception, limit: int = 300) -> str:
    """transformers' messages run over lines (and list every model type it knows): the first line says it."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return text if len(text) <= limit else text[:limit] + "..."


def main(stdin=None, stdout=None) -> int:
    """`python -m trainhub.engine describe`: the resolved job (JSON) on stdin; {"lines": [...]} on stdout, exit 0,
    or {"error": "..."}, exit 1 (module docstring)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    job = Job.model_validate_json(stdin.read())
    try:
        answer, code = {"lines": describe_groups(job)}, 0
    except Exception as err:  # any failure is one line for plan, which goes on without the groups
        message = str(err) if isinstance(err, DescribeError) else f"{type(err).__name__}: {_first_line(err)}"
        answer, code = {"error": message}, 1
    stdout.write(json.dumps(answer) + "\n")
    return code
