"""Every family and every GGUF type trainhub offers, loaded and checked in llama.cpp (llama-cpp-python).

The models are built here (tests/export/models.py: 256-wide, so k-quants apply to every matrix). Each
export runs the verification a user's export runs (trainhub.export.verify) and the test asserts it
passed, plus what the type must show: the float types' log-prob difference, q8_0's and the k-quants'
top-1 agreement and KL, and the tensors really stored in the type asked for. The numbers of the last
run are printed (pytest -s) and recorded in docs/export.md.
"""

from __future__ import annotations

import json

import pytest

from tests.export.models import build

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not importable (pip install -e '.[gguf]')")

from trainhub.export.gguf_vocab import KNOWN_SPLITS  # noqa: E402
from trainhub.export.gguf_write import QUANTS  # noqa: E402
from trainhub.export.main import ExportError, export  # noqa: E402

pytestmark = pytest.mark.slow  # the real CLI, model builds, llama.cpp: seconds to minutes each

FAMILY_QUANTS = {family: list(QUANTS) for family in ("qwen2", "qwen3", "gpt2", "gpt2-nanogpt")}
"""Every type trainhub offers, on every family it exports (llama: test_every_type_on_llama)."""
NANOGPT = {"activation_function": "gelu"}
"""What the nanoGPT backend's export writes: exact (erf) GELU, where llama.cpp runs the tanh one."""


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build("llama", tmp_path_factory.mktemp("gguf") / "tiny-llama")


def check(record: dict, quant: str) -> dict:
    v = record["verification"]
    print(f"{record['file']}: max_abs {v['logprob_max_abs_diff']:.2e} top1 {v['top1_agreement']:.3f} "
          f"kl_mean {v['kl_mean']:.2e} kl_max {v['kl_max']:.2e} greedy {v['greedy_identical']} "
          f"types {record['tensor_types']}")
    assert v["passed"], v["failures"]
    assert v["loads"] and v["tokenization_identical"] and v["prompts"] == 6
    if quant in ("f32", "f16"):
        assert v["greedy_identical"]
    wanted = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}.get(quant)
    if wanted is None:  # a k-quant: its own type, none left to a fallback (the widths are multiples of 256)
        wanted = quant.split("_")[0].upper() + "_K"
        assert "note" not in record
    assert record["tensor_types"].get(wanted, 0) > 0
    return v


def test_every_type_on_llama(llama, tmp_path):
    records = export(llama, "gguf", list(QUANTS), tmp_path, say=lambda line: None)
    assert [r["quant"] for r in records] == list(QUANTS)
    results = {r["quant"]: check(r, r["quant"]) for r in records}
    assert results["f32"]["logprob_max_abs_diff"] < 0.01  # llama.cpp sums in another order
    assert results["f16"]["logprob_max_abs_diff"] < results["q8_0"]["logprob_max_abs_diff"]
    assert results["q8_0"]["kl_mean"] < results["q4_k_m"]["kl_mean"] < results["q2_k"]["kl_mean"]
    recorded = json.loads((tmp_path / "export.json").read_text())["files"]
    assert set(recorded) == {f"tiny-llama-{q}.gguf" for q in QUANTS}


@pytest.mark.parametrize("family", sorted(FAMILY_QUANTS))
def test_families(family, tmp_path):
    extra = NANOGPT if family == "gpt2-nanogpt" else {}
    folder = build(family.split("-")[0], tmp_path / f"tiny-{family}", **extra)
    for record in export(folder, "gguf", FAMILY_QUANTS[family], tmp_path / "out", say=lambda line: None):
        check(record, record["quant"])


def test_k_quant_on_narrow_rows_says_so(tmp_path):
    """64-wide rows do not fill a 256-weight super-block: llama.cpp falls back, and export.json says why."""
    folder = build("llama", tmp_path / "narrow", width=64, ffn=128)
    lines: list[str] = []
    (record,) = export(folder, "gguf", ["q4_k_m"], tmp_path / "out", say=lines.append)
    assert "Q4_K" not in record["tensor_types"]
    assert "q4_k_m needs matrix rows that are multiples of 256 (this model's widths: [64, 128])" in record["note"]
    assert any(line.startswith("note: no tensor is Q4_K") for line in lines)


@pytest.mark.parametrize("regex", sorted(KNOWN_SPLITS), ids=lambda r: KNOWN_SPLITS[r])
def test_split_pre_tokenizers(llama, tmp_path, regex):
    """A tokenizer splitting text as Llama 3 or Qwen2 does is written under llama.cpp's name for that
    split, and llama.cpp tokenizes the prompts as transformers does."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(llama, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (record,) = export(folder, "gguf", ["f16"], tmp_path / "ok", say=lambda line: None)
    assert record["tokenizer"]["pre"] == KNOWN_SPLITS[regex]
    check(record, "f16")


def failed_verification(folder, out) -> dict:
    with pytest.raises(ExportError, match="verification failed"):
        export(folder, "gguf", ["f16"], out, say=lambda line: None)
    (record,) = json.loads((out / "export.json").read_text())["files"].values()
    assert not record["verification"]["passed"]
    return record["verification"]


def test_verification_catches_a_wrong_token_type(llama, tmp_path, monkeypatch):
    """Special tokens written as normal text: llama.cpp spells <|im_start|> out in the chat prompt."""
    from trainhub.export import gguf_vocab

    monkeypatch.setattr(gguf_vocab, "CONTROL", gguf_vocab.NORMAL)
    v = failed_verification(llama, tmp_path)
    assert v["failures"] == ["tokenisation differs from the HF tokenizer's"]
    assert v["tokenization_mismatches"][0]["prompt"].startswith("<|im_start|>system")


def test_verification_catches_a_missing_rotary_relayout(llama, tmp_path, monkeypatch):
    """q/k rows left in transformers' layout: the same weights, another model to llama.cpp."""
    from trainhub.export import gguf_arch

    monkeypatch.setattr(gguf_arch, "halves_to_pairs", lambda w, n_heads: w)
    v = failed_verification(llama, tmp_path)
    assert v["tokenization_identical"]
    assert any(f.startswith("log-prob max abs diff") for f in v["failures"])


def test_nanogpt_checkpoint(tmp_path):
    """A nanoGPT run's checkpoint (ckpt.pt: Linear [out, in] weights, `_orig_mod.` prefixes, the run's
    tokenizer beside it) -> GPT-2 -> GGUF, verified: `trainhub export RUN --checkpoint step-N`."""
    import torch
    from transformers import GPT2LMHeadModel

    from tests.export.models import tokenizer
    from trainhub.export.nanogpt import TRANSPOSED

    hf = GPT2LMHeadModel.from_pretrained(build("gpt2", tmp_path / "hf", **NANOGPT))
    c = hf.config
    weights = {f"_orig_mod.{k}": (v.t().contiguous() if k.endswith(TRANSPOSED) else v)
               for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    args = {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "block_size": c.n_positions,
            "bias": True, "vocab_size": c.vocab_size, "dropout": 0.0}
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000010"
    step.mkdir(parents=True)
    torch.save({"model": weights, "model_args": args, "iter_num": 10, "best_val_loss": 1e9, "config": {}},
               step / "ckpt.pt")
    (run / "job.json").write_text(json.dumps({"name": "tiny-nanogpt"}))
    tokenizer().save_pretrained(run / "tokenizer")
    (record,) = export(run, "gguf", ["f16"], checkpoint="step-00000010", say=lambda line: None)
    assert record["file"] == "tiny-nanogpt-f16.gguf" and record["source"].endswith("checkpoint step-00000010")
    assert record["arch"] == "gpt2"
    check(record, "f16")


def test_a_file_llama_cpp_cannot_load_fails_verification(llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from trainhub.export.source import load_tokenizer
    from trainhub.export.verify import summary, verify

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    v = verify(broken, AutoModelForCausalLM.from_pretrained(llama), load_tokenizer(llama), "f16")
    assert not v["loads"] and not v["passed"]
    assert summary(v).startswith("verify f16: FAILED: llama.cpp could not load the file")


def test_llama3_rope_scaling(tmp_path):
    """Llama 3.1's scaled rotary (rope_type llama3): per-frequency divisors in rope_freqs.weight. The
    original context (16) is shorter than the prompts, so every frequency band is exercised."""
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    folder = build("llama", tmp_path / "tiny-llama31", rope_scaling=scaling)
    (record,) = export(folder, "gguf", ["f16"], tmp_path / "out", say=lambda line: None)
    check(record, "f16")
    assert record["tensor_types"]["F32"] == 6  # 5 norms + rope_freqs


def test_lora_checkpoint_is_merged_then_exported(tmp_path):
    """A LoRA run's checkpoint holds only the adapter: it is merged into the job's base model, and the
    GGUF answers as the merged model does (not as the base: the adapter is made to matter)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = build("llama", tmp_path / "base", width=256)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    run = tmp_path / "run"
    model.save_pretrained(run / "checkpoints" / "step-00000005")
    (run / "job.json").write_text(json.dumps({"name": "tiny-lora", "model": {"path": str(base)}}))
    (record,) = export(run, "gguf", ["f16"], checkpoint="step-00000005", say=lambda line: None)
    assert record["source"].endswith("checkpoint step-00000005 (merged)")
    check(record, "f16")
    (plain,) = export(base, "gguf", ["f16"], tmp_path / "base-out", say=lambda line: None)
    from gguf import GGUFReader

    def q(path):
        return next(t.data.copy() for t in GGUFReader(path).tensors if t.name == "blk.0.attn_q.weight")

    assert not (q(record["path"]) == q(plain["path"])).all()  # the merged weights, not the base's
