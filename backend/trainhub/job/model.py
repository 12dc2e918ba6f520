"""The `model:` section (an existing model's path, or an architecture to build with its tokenizer) and the
`adapter:` section (which of its weights are trained: all, LoRA or QLoRA)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trainhub.job.base import Section, _shorthand


class TrainTokenizer(Section):
    type: Literal["train"] = "train"
    """Train a byte-level BPE tokenizer on the job's training text and save it with the model."""
    vocab_size: int = Field(4096, ge=300, le=262_144)
    """Vocabulary size, special tokens included (256 byte symbols are always present)."""
    min_frequency: int = Field(2, ge=1)
    """A pair must occur at least this often to be merged."""


class PathTokenizer(Section):
    type: Literal["path"] = "path"
    """Use an existing tokenizer."""
    path: str
    """A local tokenizer folder or a hub id."""


Tokenizer = Annotated[TrainTokenizer | PathTokenizer, Field(discriminator="type"), BeforeValidator(_shorthand)]


class Architecture(Section):
    family: Literal["llama", "qwen2", "qwen3"] = "llama"
    """Model family: llama (no biases), qwen2 (biases on the q, k and v projections) or qwen3 (an RMSNorm on each
    query and key head, no biases); exported with the matching HF config class (LlamaConfig, Qwen2Config, Qwen3Config)."""
    hidden_size: int = Field(ge=8)
    """Width of the residual stream."""
    intermediate_size: int = Field(ge=8)
    """Width of the MLP."""
    num_layers: int = Field(ge=1)
    """Number of transformer blocks."""
    num_heads: int = Field(ge=1)
    """Attention (query) heads."""
    num_kv_heads: int | None = Field(None, ge=1)
    """Key/value heads for grouped-query attention; null means num_heads."""
    head_dim: int | None = Field(None, ge=2, multiple_of=2)
    """Width of each attention head; null means hidden_size / num_heads. Qwen3 sets it apart from hidden_size
    (Qwen3-0.6B: 16 heads of 128 in a 1024-wide stream); llama keeps hidden_size divisible by num_heads
    (transformers' LlamaConfig requires it). Even: rotary embeddings turn pairs of dimensions."""
    max_position_embeddings: int = Field(2048, ge=8)
    """Longest sequence the rotary embedding is configured for."""
    rope_theta: float = Field(10_000.0, gt=0)
    """Rotary embedding base."""
    tie_embeddings: bool = True
    """Share the input embedding with the output head."""
    tokenizer: Tokenizer = TrainTokenizer()
    """Where the tokenizer comes from; its size sets the vocabulary."""

    @model_validator(mode="after")
    def _heads_divide(self) -> Architecture:
        if (self.head_dim is None or self.family == "llama") and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {kv}")
        return self


class GPT2Architecture(Section):
    family: Literal["gpt2"]
    """GPT-2 (the nanoGPT model): learned positions, pre-LayerNorm blocks, GELU MLP of 4 x n_embd, tied head.
    Exported as a transformers GPT2LMHeadModel."""
    n_layer: int = Field(ge=1)
    """Number of transformer blocks."""
    n_head: int = Field(ge=1)
    """Attention heads."""
    n_embd: int = Field(ge=8)
    """Width of the residual stream."""
    block_size: int = Field(1024, ge=8)
    """Positions the model has (its context length); nanoGPT trains on windows of exactly this many tokens."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on embeddings, attention and residual branches (0.0 for pretraining, as nanoGPT advises)."""
    bias: bool = False
    """Biases in the Linear and LayerNorm layers (GPT-2 had them; nanoGPT's default is without)."""
    vocab_size: int | None = Field(None, ge=1)
    """Rows of the embedding; null: the tokenizer's size. Larger pads it (nanoGPT pads GPT-2's 50,257 to 50,304,
    a multiple of 64, for speed); never smaller than the tokenizer."""
    tokenizer: Tokenizer = TrainTokenizer()
    """Where the tokenizer comes from; its size sets the vocabulary unless vocab_size pads it."""

    @model_validator(mode="after")
    def _heads_divide(self) -> GPT2Architecture:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        return self


def _default_family(value: Any) -> Any:
    """An architecture without `family` is a Llama (as before GPT-2 was added)."""
    return {"family": "llama", **value} if isinstance(value, dict) and "family" not in value else value


Init = Annotated[Architecture | GPT2Architecture, Field(discriminator="family"), BeforeValidator(_default_family)]


class ModelSection(Section):
    path: str | None = None
    """A local Hugging Face model folder or a hub id (nanogpt: a nanoGPT ckpt.pt, or a folder or run folder
    holding one, continued with its optimizer state). Exactly one of path and init."""
    init: Init | None = None
    """Build a model with random weights from this architecture (pretraining from nothing)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the weights are stored in. float32 master weights with bf16 autocast is classic mixed precision."""
    attention: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention implementation. sdpa: torch's scaled_dot_product_attention (it picks flash, cuDNN or
    memory-efficient kernels), and on the native engine's own model flash-attention's varlen kernel for packed
    rows on a GPU. eager and flash_attention_2 are transformers' implementations: under model.impl auto they
    take the native engine to transformers' model (`trainhub plan` says so); model.impl own refuses them."""
    impl: Literal["auto", "own", "hf"] = "auto"
    """native: which implementation trains the model. auto: trainhub's own decoder (engine/models) for llama,
    qwen2 and qwen3 in the forms it implements, transformers' for anything else; own: trainhub's or an error;
    hf: transformers' AutoModelForCausalLM (to compare, or for a feature the own model lacks). Other backends
    use their own stack's model."""
    trust_remote_code: bool = False
    """Allow a hub model to run its own Python code. Off unless you set it."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.path is None) == (self.init is None):
            raise ValueError("set exactly one of model.path (an existing model) and model.init (a new one)")
        return self


# ----------------------------------------------------------------------------- adapter (the method: job/methods.py)


class FullAdapter(Section):
    type: Literal["full"] = "full"
    """Train every weight."""


class LoraAdapter(Section):
    type: Literal["lora"] = "lora"
    """Low-rank adapters (through peft); the base weights stay frozen."""
    rank: int = Field(16, ge=1, le=4096)
    """Rank r of each adapter."""
    alpha: float = Field(32.0, gt=0)
    """Scale numerator: updates are scaled by alpha / rank."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapter input."""
    targets: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]), or all-linear for every linear layer but the output head."""


class QloraAdapter(LoraAdapter):
    type: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    """LoRA over base weights quantized to 4-bit NF4 while training (native: torchao, unsloth: bitsandbytes); the adapters train in the model's dtype. Needs a pretrained model.path."""


Adapter = Annotated[FullAdapter | LoraAdapter | QloraAdapter, Field(discriminator="type"),
                    BeforeValidator(_shorthand)]
