"""The `backend:` section: which training stack runs the job, a union discriminated on `type` (a bare
string is shorthand): auto, native, nanogpt, trl, unsloth and llamafactory."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from trainhub.job.base import Section, _shorthand


class AutoBackend(Section):
    type: Literal["auto"] = "auto"
    """Pick the best backend that supports every feature the job asks for on this host."""


class NativeBackend(Section):
    type: Literal["native"] = "native"
    """trainhub's own engine: a plain PyTorch loop."""
    compile: bool = False
    """Wrap the model in torch.compile (GPU only; ignored with a notice on CPU)."""
    kernels: Literal["auto", "triton", "liger", "none"] = "auto"
    """Fused kernels for the own model's RMSNorm, RoPE and SwiGLU and for the head + cross-entropy (train.loss auto). triton: trainhub's (engine/kernels; needs a CUDA GPU); liger: Liger-Kernel's (pip install 'trainhub[liger]'); none: eager PyTorch; auto: triton on a CUDA GPU where Triton imports, else none."""
    sdpa: Literal["auto", "cudnn"] = "auto"
    """The own model's attention kernel on a GPU (packed rows keep flash-attention's varlen kernel). auto: torch's choice, flash attention first; cudnn: cuDNN's fused attention first where torch's dispatcher accepts the call for it, else flash as under auto. Ignored on CPU, with a note."""


class NanoGPTBackend(Section):
    type: Literal["nanogpt"] = "nanogpt"
    """A checkout of karpathy/nanoGPT (or a fork): its train.py driven by a generated config file, unmodified."""
    repo: str | None = None
    """The checkout (the folder holding train.py, configurator.py and model.py); null: $NANOGPT_DIR."""
    compile: bool = True
    """nanoGPT's compile key: torch.compile the model. GPU only; on CPU it is off and the start row says so."""
    processes: int | None = Field(None, ge=1)
    """GPUs to train on, one process each (torchrun --standalone --nproc_per_node N); null: every visible GPU (CPU: 1)."""


class TrlBackend(Section):
    type: Literal["trl"] = "trl"
    """Hugging Face TRL's trainers (SFT, DPO, ORPO, KTO, GRPO family); needs pip install 'trainhub[trl]'."""


class UnslothBackend(Section):
    type: Literal["unsloth"] = "unsloth"
    """Unsloth's FastLanguageModel with TRL's trainers, in Unsloth's own environment (trainhub env setup unsloth); one GPU."""


class LlamaFactoryBackend(Section):
    type: Literal["llamafactory"] = "llamafactory"
    """LLaMA-Factory's run_exp, in an environment of its own (`trainhub env setup llamafactory`)."""


Backend = Annotated[AutoBackend | NativeBackend | NanoGPTBackend | TrlBackend | UnslothBackend | LlamaFactoryBackend,
                    Field(discriminator="type"), BeforeValidator(_shorthand)]

# Backends that later issues add. Naming one gives a clear "planned" error, not a puzzle.
PLANNED_BACKENDS: tuple[str, ...] = ()
