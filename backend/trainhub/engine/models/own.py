"""The "own" path: a job's model as trainhub's CausalLM (transformer.py), with LoRA through peft.

Build: `model.init` -> ModelArgs from the architecture, weights initialised as transformers would
(transformer.init_weights, seeded with the job's seed); `model.path` -> the HF checkpoint loaded by
hf_io.load_hf. Then the job's dtype, the gradient-checkpointing switch, and LoRA.

LoRA. peft's get_peft_model works on any nn.Module: it swaps each targeted nn.Linear for a
lora.Linear in place, so our forward runs the adapters without knowing. We pass no task_type
(CAUSAL_LM would wrap the model in PeftModelForCausalLM, which expects a transformers
PreTrainedModel: generation, prepare_inputs_for_generation); the plain PeftModel calls our forward
as it is. "all-linear" is expanded here to the projection names inside the blocks, because peft
only knows to leave out the output head of a PreTrainedModel; the result is the list peft computes
for the transformers model (q/k/v/o_proj, gate/up/down_proj). Adapter files therefore carry the
same keys (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight) as from transformers,
and load on either model; merge_and_unload gives back our CausalLM with merged weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainhub.engine.model import DTYPES
from trainhub.engine.models.args import args_from_architecture
from trainhub.engine.models.hf_io import checkpoint_files, local_folder, read_config
from trainhub.engine.models.hf_names import args_from_hf, from_hf
from trainhub.engine.models.transformer import CausalLM, init_weights

INPUTS = ("input_ids", "position_ids", "attention_mask", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
          "max_length_k")
"""The keys of a data-layer batch the model reads (labels go to the loss)."""


def build(job, tokenizer) -> nn.Module:
    """The job's model on CPU in the job's dtype; a peft PeftModel around it when adapter is lora or qlora
    (qlora: the linear layers' weights in NF4 first, quant.py)."""
    spec, dtype = job.model, DTYPES[job.model.dtype]
    if spec.init is not None:
        args = args_from_architecture(spec.init, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                      tokenizer.eos_token_id)
        with torch.device("meta"):  # no memory and no throw-away default init: init_weights draws every weight
            model = CausalLM(args)
        if torch.get_default_device().type == "meta":  # a caller that asked for shapes only (optim/describe.py)
            model.tie_weights()
        else:
            model.to_empty(device="cpu")
            model.tie_weights()
            model.reset_buffers()
            init_weights(model, job.seed)
            model = model.to(dtype)
    else:
        model = load_hf(spec.path, dtype)
        model.name_or_path = spec.path  # peft writes it into adapter_config.json as the base model
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                             f"{model.config.vocab_size}")
    model.grad_checkpointing = job.train.grad_checkpointing  # none | full | selective, per block
    if job.adapter.type == "qlora":  # frozen NF4 base weights under the adapters (quant.py)
        from trainhub.engine.models.quant import quantize_nf4

        quantize_nf4(model)
    if job.adapter.type in ("lora", "qlora"):
        model = add_lora(model, job.adapter)
    return model


def load_hf(path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> CausalLM:
    """Our model with the weights of an HF checkpoint of family llama, qwen2 or qwen3."""
    from safetensors.torch import load_file

    folder = local_folder(path)
    args = args_from_hf(read_config(folder))
    with torch.device("meta"):
        model = CausalLM(args)
    tensors: dict[str, torch.Tensor] = {}
    for file in checkpoint_files(folder):
        tensors.update(load_file(file, device=str(device)))
    state = {name: t.to(dtype) for name, t in from_hf(tensors, args).items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()  # assign=True replaced the shared Parameter by two
    model.reset_buffers()
    return model


def add_lora(model: CausalLM, lora) -> nn.Module:
    """peft LoRA on our model (module docstring); `lora` is the job's LoraAdapter."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        target_modules=lora_targets(model, lora.targets)))


PEFT_FUSED_TESTED = ("0.21",)
"""peft versions (major.minor) whose lora.Linear attributes fuse_lora reads (base_layer, lora_A/B, scaling,
lora_dropout, lora_variant, active_adapters, merged, disable_adapters); tests/kernels/test_lora.py compares
the fused layers with peft's own forward, so a moved attribute fails there first."""


def fuse_lora(model: nn.Module) -> int:
    """Route each plain LoRA layer of a peft model (one adapter, nn.Linear base, no dropout, no DoRA) through
    engine/kernels/lora.py's fused forward/backward while the model trains; per instance, so peft's class stays
    as it is. In eval mode (evaluation, the GRPO sampler's rollouts) peft's own forward runs: the fused
    Function's gain is in what it saves and the backward's passes, and the sampler runs reference ops. Returns
    how many layers were fused (0 under an untested peft: those keep peft's forward)."""
    import types

    import peft
    from peft.tuners.lora import Linear as LoraLinear

    if ".".join(peft.__version__.split(".")[:2]) not in PEFT_FUSED_TESTED:
        return 0
    fused = 0
    for module in model.modules():
        if not isinstance(module, LoraLinear) or type(module.base_layer) is not nn.Linear:
            continue
        names = list(module.active_adapters)
        if len(names) != 1 or names[0] not in module.lora_A or names[0] in getattr(module, "lora_variant", {}):
            continue
        if not isinstance(module.lora_dropout[names[0]], nn.Identity):
            continue
        module.forward = types.MethodType(_fused_lora_forward, module)
        module.forward_swiglu = types.MethodType(_fused_swiglu_forward, module)  # when it is an MLP's down_proj
        fused += 1
    return fused


def _fused_case(layer) -> str | None:
    """The adapter's name when `layer` runs the fused Function now: training, one active adapter, not merged."""
    names = layer.active_adapters
    if not layer.training or layer.disable_adapters or layer.merged or len(names) != 1 or names[0] not in layer.lora_A:
        return None
    return names[0]


def _fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    from trainhub.engine.kernels.lora import lora_linear

    name = None if args or kwargs else _fused_case(self)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)  # anything but the one-adapter training case: peft's
    return lora_linear(x, self.base_layer.weight, self.base_layer.bias, self.lora_A[name].weight,
                       self.lora_B[name].weight, self.scaling[name])


def _fused_swiglu_forward(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """The layer on silu(gate) * up, the product made inside (kernels/lora.py SwigluLoraFunction); None where
    the layer would run peft's forward, and the MLP then makes the product and calls the layer."""
    from trainhub.engine.kernels.lora import swiglu_lora_linear

    name = _fused_case(self)
    if name is None:
        return None
    return swiglu_lora_linear(gate, up, self.base_layer.weight, self.base_layer.bias, self.lora_A[name].weight,
                              self.lora_B[name].weight, self.scaling[name])


def load_lora(model: CausalLM, folder, trainable: bool = False) -> nn.Module:
    """A saved LoRA adapter (ours or one trained on transformers' model) on our model. The adapter's
    task_type is dropped: CAUSAL_LM would pick PeftModelForCausalLM, which wants generation methods."""
    from peft import PeftConfig, PeftModel

    config = PeftConfig.from_pretrained(str(folder))
    config.task_type = None
    return PeftModel.from_pretrained(model, str(folder), config=config, is_trainable=trainable)


def lora_targets(model: CausalLM, targets) -> list[str]:
    """Module names for peft: the job's list as given, or every Linear inside the blocks for "all-linear"."""
    if targets != "all-linear":
        return list(targets)
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.model.layers.named_modules()
                   if isinstance(m, nn.Linear)})


def unwrap(model: nn.Module) -> nn.Module:
    """The model under a peft wrapper (the LoRA layers stay in it), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def hidden(model: nn.Module, batch: dict) -> torch.Tensor:
    """Final-normed hidden states [B, T, H] for a batch as the data layer yields it (packed kinds too)."""
    return model(**{k: batch[k] for k in INPUTS if k in batch})


def head_weight(model: nn.Module) -> torch.Tensor:
    return unwrap(model).head_weight


def compile_blocks(model: nn.Module) -> None:
    """torch.compile each block in place (module identity and parameter names unchanged, so checkpoints,
    peft and the optimizer see the same model). Per block, not the whole model: the blocks share one code
    path, so one graph serves all of them (compile time of one block, not of 16 or 28); a block checkpoints
    itself inside its forward (transformer.Block), so the compiled graph holds the recomputation and the
    selective policy is applied by the compiler."""
    for block in unwrap(model).model.layers:
        block.compile()


def set_offload(model: nn.Module, on: bool) -> None:
    """Keep the tensors saved for the backward in host memory (checkpointing.py)."""
    unwrap(model).activation_offload = on
