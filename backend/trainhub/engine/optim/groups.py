"""Parameter groups by role, decided from names and shapes.

Optimizers treat a model's weights differently by what they do: Muon orthogonalises the hidden
matrices but not the embedding; AdamW shrinks matrices toward zero but not norm gains; recipes train
the embedding faster and the head slower than the rest. So every optimizer sees the trainable
parameters split into four roles, and each role carries the job's learning-rate multiplier:

    embed    the input embedding (a lookup table, one row touched per token)
    head     the output head; a tied embedding-and-head matrix counts as head (every step touches all of it)
    matrix   every other parameter with 2 or more dimensions: attention and MLP projections, LoRA's A and B
    vector   norm gains, biases, anything 1-D

The embedding and head are found by identity (the model's get_input_embeddings / get_output_embeddings
where it has them, through a peft wrapper too), falling back to transformers' names (embed_tokens, wte,
lm_head) for models without those methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ROLES = ("embed", "head", "matrix", "vector")
EMBED_NAMES, HEAD_NAMES = ("embed_tokens", "wte", "word_embeddings"), ("lm_head",)


@dataclass
class Group:
    role: str
    params: list[torch.nn.Parameter] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _weight_of(model, method: str) -> torch.nn.Parameter | None:
    getter = getattr(model, method, None)
    if getter is None:
        return None
    try:
        module = getter()
    except (NotImplementedError, AttributeError):
        return None
    return getattr(module, "weight", None)


def role_of(name: str, param: torch.nn.Parameter, embed, head) -> str:
    if head is not None and param is head:
        return "head"  # a tied matrix is both: it is the head's step that touches all of it
    if embed is not None and param is embed:
        return "embed"
    if param.ndim < 2:
        return "vector"
    if any(part in name for part in HEAD_NAMES) and not any(part in name for part in ("lora_",)):
        return "head"
    if any(part in name.split(".") for part in EMBED_NAMES):
        return "embed"
    return "matrix"


def split_by_role(model: torch.nn.Module) -> dict[str, Group]:
    """The trainable parameters of `model` by role, in the model's own order; roles without any are left out."""
    embed, head = _weight_of(model, "get_input_embeddings"), _weight_of(model, "get_output_embeddings")
    groups = {role: Group(role) for role in ROLES}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        group = groups[role_of(name, param, embed, head)]
        group.params.append(param)
        group.names.append(name)
    return {role: g for role, g in groups.items() if g.params}


def role_param_groups(spec, groups: dict[str, Group], *, decay_vectors: bool = False) -> list[dict]:
    """One torch param group per role: `role`, `lr_mult` (the job's multiplier), `lr` (peak x multiplier) and
    `weight_decay` (the spec's, but 0 for vectors unless decay_vectors: shrinking a norm gain or a bias toward
    zero fights what it is for). Every optimizer but Muon builds on these."""
    return [{"params": g.params, "role": role, "lr_mult": getattr(spec.lr_mult, role),
             "lr": spec.lr * getattr(spec.lr_mult, role),
             "weight_decay": spec.weight_decay if decay_vectors or role != "vector" else 0.0}
            for role, g in groups.items()]
