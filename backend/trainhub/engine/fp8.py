"""FP8 training of a model's Linear layers through torchao's float8 training, and which layers get it.

    report = convert_to_fp8(model, spec)     # spec: the job's train.precision (type fp8); in place

How it works (torchao.float8, a maintained library; we configure it, we do not reimplement it). Each
chosen nn.Linear becomes a Float8Linear that keeps its weight Parameter as it was (float32 master weights
under bf16 autocast here) and, every forward, casts the input and the weight to float8 (e4m3) with a scale
taken from the tensor's current absolute maximum, multiplies them with torch._scaled_mm on the GPU's FP8
tensor cores (twice bf16's dense rate on an H100), and gets a bf16 result. The backward does the same for
grad_input and grad_weight (grad_output in e5m2 or e4m3 by recipe). So nothing about the checkpoint,
the optimizer or the state_dict changes: parameter names and dtypes are those of nn.Linear.

    recipe               scales                       grad_weight matmul   published (torchao, Llama-3-8B, 8 x H100, compiled)
    tensorwise           one per tensor               fp8                  +25% over bf16
    rowwise              one per row, powers of 2     fp8                  +10%, more robust to outliers
    rowwise_with_gw_hp   one per row                  bf16                 less gain, the most accurate

Why a filter. Each fp8 matmul pays for an amax reduction and a cast of both operands (memory-bound
work proportional to M*K + K*N) against a matmul saving proportional to M*K*N, so small K or N lose: the
casts cost more than the tensor cores save. torchao's H100 tables put the break-even, for rowwise, at
N <= 2048, K <= 1024, or N <= 4096 with K <= 2048; for tensorwise at K <= 4096 with N <= 1024. `SLOW`
holds those rules as boxes, per recipe, until research/bench_fp8_filter.py measures them on our GPU
(it prints boxes in this format). Dimensions not multiples of 16 never convert (_scaled_mm needs them).

Names: a Linear's weight is [N, K] (out, in); M is the tokens of a micro-batch.

What always stays in bf16: the head (its matmul runs inside the loss, engine/loss.py, from the weight
tensor, not through the module) and LoRA's adapters (small, rank-sized matrices, and the only trained
ones: their gradients keep full precision). Under LoRA the frozen base Linear inside each peft layer is
converted like any other, so the adapters' inputs and outputs are bf16 and the base matmul is fp8.

Order with the other wrappers (engine/parallelize.py): fp8 -> activation checkpointing -> compile ->
FSDP2/DDP; this module is the first step. torch.compile fuses the amax, scale and cast into the
neighbouring kernels; without it fp8 is slower than bf16, which is why the job must ask for compile.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from trainhub.engine.precision import fp8_refusal

INF = 1 << 62

SLOW: dict[str, tuple[tuple[int, int], ...]] = {
    # (K, N): a Linear is kept in bf16 when K <= k and N <= n for one of its recipe's boxes
    "tensorwise": ((4096, 1024),),
    "rowwise": ((INF, 2048), (1024, INF), (2048, 4096)),
    # torchao documents no filter for it; its grad_weight matmul is bf16, so it gains at most what rowwise
    # does: rowwise's boxes until the microbenchmark says otherwise
    "rowwise_with_gw_hp": ((INF, 2048), (1024, INF), (2048, 4096)),
}
"""Shapes whose fp8 matmul does not pay, per recipe (module docstring). Source: torchao's documented H100
filter (torchao.float8 _auto_filter_for_recipe); research/bench_fp8_filter.py measures the replacement."""

ADAPTER = re.compile(r"(^|\.)lora_[A-Za-z]+(\.|$)")
"""peft's adapter modules (lora_A, lora_B, lora_embedding_A, ...): never converted."""


class Fp8Error(RuntimeError):
    """fp8 cannot run as the job asks (device, package, model)."""


@dataclass(frozen=True)
class Choice:
    name: str
    """The module's name in the model (peft's prefix included under LoRA)."""
    kind: str
    """The name inside its block (self_attn.q_proj), or the whole name outside the blocks (lm_head)."""
    k: int
    n: int
    kept: str | None
    """Why it stays in bf16; None: converted to fp8."""


@dataclass
class Fp8Report:
    recipe: str
    choices: list[Choice] = field(default_factory=list)

    @property
    def converted(self) -> list[str]:
        return [c.name for c in self.choices if c.kept is None]

    @property
    def kept(self) -> dict[str, str]:
        return {c.name: c.kept for c in self.choices if c.kept is not None}

    def lines(self) -> list[str]:
        """Start-row notes: the count, then each (layer kind, K, N) once with its decision and how many."""
        head = (f"fp8 {self.recipe} (torchao float8): {len(self.converted)} of {len(self.choices)} Linear layers "
                f"in fp8, the rest bf16")
        groups = Counter((c.kind, c.k, c.n, c.kept or "fp8") for c in self.choices)
        lines = [head] + [f"  {kind} K={k} N={n} x{count}: {what}" for (kind, k, n, what), count in groups.items()]
        if not self.converted:
            lines.append("  no Linear layer converted: this run is a bf16 run (filter: all converts the layers "
                         "whose dimensions allow it, paying or not)")
        return lines


def slow(recipe: str, k: int, n: int) -> bool:
    """True when fp8 does not pay for a [n, k] weight under `recipe` (the boxes of SLOW)."""
    return any(k <= bk and n <= bn for bk, bn in SLOW[recipe])


def block_index(model: nn.Module) -> tuple[dict[str, int], int]:
    """(module-name prefix of each transformer block -> its index, number of blocks): the blocks are the
    children of the model's largest nn.ModuleList (model.layers for Llama/Qwen, transformer.h for GPT-2)."""
    best, best_name = None, ""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best)):
            best, best_name = module, name
    if best is None:
        return {}, 0
    return {f"{best_name}.{i}." if best_name else f"{i}.": i for i in range(len(best))}, len(best)


def choose_layers(model: nn.Module, spec) -> Fp8Report:
    """Every nn.Linear of `model` with its decision under `spec` (train.precision fp8), in module order;
    nothing is changed. Reasons to keep one in bf16 are checked in this order: head, adapter, a module
    name the job lists, first/last blocks, dimensions not multiples of 16, a shape that does not pay."""
    head = _head_names(model)
    blocks, n_blocks = block_index(model)
    if (spec.skip_first_layers or spec.skip_last_layers) and not n_blocks:
        raise Fp8Error("train.precision.skip_first_layers/skip_last_layers: this model has no list of blocks "
                       "(nn.ModuleList) to count layers in")
    if spec.skip_first_layers + spec.skip_last_layers > n_blocks and n_blocks:
        raise Fp8Error(f"train.precision: skip_first_layers {spec.skip_first_layers} + skip_last_layers "
                       f"{spec.skip_last_layers} exceed the model's {n_blocks} blocks")
    report = Fp8Report(spec.recipe)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        n, k = module.weight.shape
        prefix = next((p for p in blocks if (name + ".").startswith(p)), None)
        index = blocks[prefix] if prefix is not None else None
        kind = name[len(prefix):].replace(".base_layer", "") if prefix is not None else name
        report.choices.append(Choice(name, kind, k, n, _why_kept(name, k, n, spec, head, index, n_blocks)))
    unmatched = [s for s in spec.skip_modules if not any(s in c.name for c in report.choices)]
    if unmatched:
        raise Fp8Error(f"train.precision.skip_modules: {', '.join(unmatched)} match no Linear layer of this model "
                       f"(names look like {report.choices[0].name if report.choices else 'nothing'})")
    return report


def _why_kept(name: str, k: int, n: int, spec, head: set[str], index: int | None, n_blocks: int) -> str | None:
    if name in head:
        return "head (its matmul runs in the loss)"
    if ADAPTER.search(name):
        return "LoRA adapter"
    hit = next((s for s in spec.skip_modules if s in name), None)
    if hit is not None:
        return f"skip_modules {hit}"
    if index is not None and index < spec.skip_first_layers:
        return f"skip_first_layers {spec.skip_first_layers}"
    if index is not None and index >= n_blocks - spec.skip_last_layers:
        return f"skip_last_layers {spec.skip_last_layers}"
    if k % 16 or n % 16:
        return "dimensions not multiples of 16"
    if spec.filter == "measured" and slow(spec.recipe, k, n):
        return f"shape does not pay under {spec.recipe}"
    return None


def _head_names(model: nn.Module) -> set[str]:
    """Names under which the model's output head is reachable (get_output_embeddings, through peft too)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    return {name for name, m in model.named_modules() if head is not None and m is head}


def float8_config(recipe: str, *, float8_all_gather: bool = False):
    """torchao's Float8LinearConfig for the recipe. `float8_all_gather`: FSDP2 all-gathers the weights in
    float8 (half of bf16's bytes); torchao allows it for tensorwise only."""
    try:
        from torchao.float8 import Float8LinearConfig
    except ImportError as err:
        raise Fp8Error("train.precision fp8 needs the package torchao (pip install 'trainhub[fp8]')") from err
    if float8_all_gather and recipe != "tensorwise":
        raise Fp8Error(f"float8 all-gather under FSDP2 works with recipe tensorwise only, not {recipe}")
    config = Float8LinearConfig.from_recipe_name(recipe)
    if float8_all_gather:
        import dataclasses

        config = dataclasses.replace(config, enable_fsdp_float8_all_gather=True)
    return config


def convert_to_fp8(model: nn.Module, spec, *, float8_all_gather: bool = False) -> Fp8Report:
    """Swap the chosen nn.Linear layers of `model` for torchao Float8Linear, in place (parameter names,
    dtypes and module paths unchanged); returns every Linear's decision. Call it on the model on its
    device, before activation checkpointing, torch.compile and FSDP2/DDP wrap it."""
    config = float8_config(spec.recipe, float8_all_gather=float8_all_gather)
    from torchao.float8 import convert_to_float8_training
    from torchao.float8.float8_linear import Float8Linear

    if any(isinstance(m, Float8Linear) for m in model.modules()):
        raise Fp8Error("convert_to_fp8: the model already has float8 layers (it runs once, before compile)")

    report = choose_layers(model, spec)
    chosen = set(report.converted)
    if not chosen:
        return report
    convert_to_float8_training(model, config=config, module_filter_fn=lambda _m, name: name in chosen)

    swapped = {name for name, m in model.named_modules() if isinstance(m, Float8Linear)}
    if swapped != chosen:  # torchao's traversal names modules as named_modules does; a change would show here
        raise Fp8Error(f"fp8 conversion swapped {sorted(swapped ^ chosen)[:3]} unlike the filter's choice")
    return report


def float8_all_gather(spec, strategy: str) -> bool:
    """Whether FSDP2 all-gathers the float8 layers' weights in float8: under strategy fsdp2 with recipe
    tensorwise (torchao has it for that recipe only; the others gather bf16/fp32 weights as usual)."""
    return spec.type == "fp8" and strategy == "fsdp2" and spec.recipe == "tensorwise"


def precompute_scales_after_steps(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """With float8 all-gather: after every optimizer step, the scales of all FSDP2-sharded float8 weights in
    one all-reduce of their amaxes (torchao's precompute_float8_dynamic_scale_for_fsdp), instead of one
    all-reduce per weight when each is gathered."""
    from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

    optimizer.register_step_post_hook(lambda *_: precompute_float8_dynamic_scale_for_fsdp(model))


def check_device(spec, device: torch.device, *, compiled: bool) -> None:
    """Refuse fp8 where it cannot run (CPU, a GPU below compute capability 8.9) or would not pay (eager),
    with engine/precision.py's words; the GPU is named. Call it before any work."""
    cuda = device.type == "cuda"
    why = fp8_refusal(gpu=torch.cuda.get_device_name(device) if cuda else None,
                      capability=torch.cuda.get_device_capability(device) if cuda else None,
                      compiled=compiled, allow_eager=spec.allow_eager)
    if why:
        raise Fp8Error(f"train.precision: {why}")
