"""What the optimizer tests share: a tiny Llama, fixed gradients, and running optimizers side by side."""

from __future__ import annotations

import io

import torch


def tiny_llama(tied: bool = False, lora: bool = False, seed: int = 0) -> torch.nn.Module:
    """A Llama of ~10k parameters: every role present (embed and head when untied, matrices of three
    shapes, norm vectors); a LoRA wrapper over it when asked."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                                         tie_word_embeddings=tied))
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        torch.manual_seed(seed + 1)  # peft zeroes B: give it values, so A's gradients are not zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.1)
    return model


def fake_grads(params: list[torch.Tensor], step: int) -> None:
    """Deterministic gradients of every parameter's shape, different each step."""
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def loss_grads(model: torch.nn.Module, step: int) -> torch.Tensor:
    """Real gradients: the LM loss of a fixed random batch."""
    gen = torch.Generator().manual_seed(2000 + step)
    ids = torch.randint(0, 64, (2, 12), generator=gen)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach()


def params_of(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def round_trip(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() through torch.save and torch.load(weights_only=True), as checkpoints do."""
    buf = io.BytesIO()
    torch.save(optimizer.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y), (x - y).abs().max()
