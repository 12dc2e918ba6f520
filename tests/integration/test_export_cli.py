"""Export through the real CLI: the HF final folder ready for serving engines, the job's export section
checked before training and run after it, `trainhub export` on a run and on one of its checkpoints."""

from __future__ import annotations

import json

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job

pytestmark = pytest.mark.slow  # the real CLI, model builds, llama.cpp: seconds to minutes each

WIDE = {"COLUMNS": "300"}


def llama_cpp_ready() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except Exception:
        return False
    return True


needs_llama_cpp = pytest.mark.skipif(not llama_cpp_ready(), reason="llama-cpp-python is not importable "
                                     "(pip install -e '.[gguf]'): GGUF verification needs llama.cpp")


def test_final_folder_is_ready_for_serving_engines(pretrained, tmp_path):
    """vLLM and SGLang load a model folder with their own pinned transformers (4.x included): the chat
    template, the special tokens and the tokenizer class must be where 4.x reads them, and
    generation_config.json must stop at the EOS."""
    from transformers import AutoTokenizer

    for folder in (pretrained, tmp_path / "hf"):
        if folder != pretrained:
            done = run_cli("export", str(pretrained.parent), "--format", "hf", "-o", str(folder), env=WIDE)
            assert done.returncode == 0, done.stdout + done.stderr
        config = json.loads((folder / "tokenizer_config.json").read_text())
        generation = json.loads((folder / "generation_config.json").read_text())
        tok = AutoTokenizer.from_pretrained(folder)
        assert config["chat_template"] == (folder / "chat_template.jinja").read_text() == tok.chat_template
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|pad|>"
        assert config["additional_special_tokens"] == ["<|im_start|>"] and "extra_special_tokens" not in config
        assert generation["eos_token_id"] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
        assert generation["pad_token_id"] == tok.pad_token_id
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # one token, not spelled out


def test_validate_refuses_an_unknown_gguf_type_and_family(tmp_path):
    job = tiny_pretrain_job(tmp_path, export={"gguf": ["q8_0", "q4_k_x"]})
    done = run_cli("validate", "-c", str(write_job(tmp_path / "job.yaml", job)), env=WIDE)
    assert done.returncode == 1
    assert "export.gguf" in done.stderr and "q4_k_x" in done.stderr and "'q4_k_m'" in done.stderr

    model = tmp_path / "gemma"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gemma"}))
    job = tiny_pretrain_job(tmp_path, export={"gguf": ["q8_0"]})
    job["model"] = {"path": str(model)}
    done = run_cli("validate", "-c", str(write_job(tmp_path / "job2.yaml", job)), env=WIDE)
    assert done.returncode == 1
    assert "GGUF export supports the families llama, qwen2, qwen3, gpt2; this model is 'gemma'" in done.stderr


@needs_llama_cpp
def test_train_then_export_section_then_export_command(tmp_path):
    """`export: {gguf: [q8_0]}` runs after training and is verified; then `trainhub export` writes an f16
    of a checkpoint beside it, and export.json holds both."""
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 20}, export={"gguf": ["q8_0"]})
    done = run_cli("train", "-c", str(write_job(tmp_path / "job.yaml", job)), env=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    assert rows(run, "end")[0]["status"] == "completed"
    gguf_file = run / "export" / "tiny-pretrain-q8_0.gguf"
    assert gguf_file.is_file()
    assert "verify q8_0: passed" in done.stdout
    record = json.loads((run / "export" / "export.json").read_text())["files"]["tiny-pretrain-q8_0.gguf"]
    check = record["verification"]
    assert check["passed"] and check["tokenization_identical"] and check["top1_agreement"] >= 0.95
    assert record["tensor_types"]["Q8_0"] > 0

    done = run_cli("export", str(run), "--checkpoint", "latest", "--quant", "f16", env=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    files = json.loads((run / "export" / "export.json").read_text())["files"]
    assert set(files) == {"tiny-pretrain-q8_0.gguf", "tiny-pretrain-f16.gguf"}
    f16 = files["tiny-pretrain-f16.gguf"]["verification"]
    assert f16["passed"] and f16["greedy_identical"] and f16["logprob_max_abs_diff"] < 0.05
    assert files["tiny-pretrain-f16.gguf"]["source"].endswith("checkpoint step-00000020")
