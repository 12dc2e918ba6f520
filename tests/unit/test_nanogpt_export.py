"""nanoGPT ckpt.pt -> HF GPT2LMHeadModel: logits of the converted model equal a reference GPT-2 forward.

The checkpoint is written here in nanoGPT's format (train.py's dict; Linear weights [out, in]; the
`_orig_mod.` prefix a compiled model adds) from random weights, and the reference forward is this
file's own plain-torch GPT-2 (pre-LayerNorm blocks, causal softmax attention, exact GELU, tied head).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainhub.export.nanogpt import NanoGPTCheckpointError, export_hf, load_checkpoint, to_gpt2

ARGS = {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "vocab_size": 320, "dropout": 0.0}


def random_weights(bias: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    C, V, T = ARGS["n_embd"], ARGS["vocab_size"], ARGS["block_size"]

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {"transformer.wte.weight": rnd(V, C), "transformer.wpe.weight": rnd(T, C)}
    linears = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}
    for i in range(ARGS["n_layer"]):
        for ln in ("ln_1", "ln_2"):
            sd[f"transformer.h.{i}.{ln}.weight"] = 1 + rnd(C, scale=0.1)
            if bias:
                sd[f"transformer.h.{i}.{ln}.bias"] = rnd(C, scale=0.1)
        for name, shape in linears.items():
            sd[f"transformer.h.{i}.{name}.weight"] = rnd(*shape)
            if bias:
                sd[f"transformer.h.{i}.{name}.bias"] = rnd(shape[0], scale=0.1)
    sd["transformer.ln_f.weight"] = 1 + rnd(C, scale=0.1)
    if bias:
        sd["transformer.ln_f.bias"] = rnd(C, scale=0.1)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied, as nanoGPT's state_dict lists it
    return sd


def reference_logits(sd: dict, idx: torch.Tensor, bias: bool) -> torch.Tensor:
    """GPT-2 from its definition, with Linear weights stored [out, in]."""
    C, H = ARGS["n_embd"], ARGS["n_head"]
    B, T = idx.shape

    def b(name):
        return sd.get(name) if bias else None

    def ln(x, name):
        return F.layer_norm(x, (C,), sd[f"{name}.weight"], b(f"{name}.bias"), 1e-5)

    def lin(x, name):
        return x @ sd[f"{name}.weight"].T + (b(f"{name}.bias") if bias else 0)

    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(ARGS["n_layer"]):
        p = f"transformer.h.{i}"
        q, k, v = lin(ln(x, f"{p}.ln_1"), f"{p}.attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + lin(y, f"{p}.attn.c_proj")
        h = lin(ln(x, f"{p}.ln_2"), f"{p}.mlp.c_fc")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        x = x + lin(h, f"{p}.mlp.c_proj")
    return ln(x, "transformer.ln_f") @ sd["transformer.wte.weight"].T


def write_ckpt(path, sd: dict, bias: bool, prefix: str = "_orig_mod.") -> None:
    model = {prefix + k: v for k, v in sd.items()}
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "weight_decay": 0.1, "fused": None, "params": [0]}]}
    torch.save({"model": model, "optimizer": opt, "model_args": {**ARGS, "bias": bias}, "iter_num": 40,
                "best_val_loss": torch.tensor(2.5), "config": {"dataset": "/data/x", "dropout": 0.0}}, path)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_converted_logits_match_the_reference(tmp_path, bias):
    sd = random_weights(bias)
    write_ckpt(tmp_path / "ckpt.pt", sd, bias)
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["iter_num"] == 40 and float(ckpt["best_val_loss"]) == 2.5
    model = to_gpt2(ckpt)
    idx = torch.randint(0, ARGS["vocab_size"], (3, ARGS["block_size"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx).logits
        ref = reference_logits(sd, idx, bias)
    assert ref.abs().max() > 1  # logits of substance, not near zero
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_exported_folder_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainhub.data.tokenizer import train_bpe

    tok = train_bpe(["a small corpus of words and more words"] * 10, vocab_size=300,
                    min_frequency=1)
    sd = random_weights(bias=False, seed=3)
    write_ckpt(tmp_path / "ckpt.pt", sd, bias=False, prefix="")
    export_hf(tmp_path / "ckpt.pt", tok, tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.activation_function == "gelu"
    assert AutoTokenizer.from_pretrained(tmp_path / "hf").eos_token_id == tok.eos_token_id
    idx = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(idx).logits, reference_logits(sd, idx, bias=False), rtol=1e-5, atol=1e-5)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": {}, "model_args": {}, "x": Payload()}, tmp_path / "ckpt.pt")
    with pytest.raises(NanoGPTCheckpointError, match="not a loadable nanoGPT checkpoint"):
        load_checkpoint(tmp_path / "ckpt.pt")
