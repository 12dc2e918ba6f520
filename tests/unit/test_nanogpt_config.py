"""The nanoGPT side of a job: the generated config (values typed as nanoGPT's defaults), the schedule,
parameter counts, the checkout reader, and what `check` refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import merge, tiny_pretrain_job
from trainhub.host import Host
from trainhub.jobfile import validate
from trainhub.runners import RUNNERS
from trainhub.runners.nanogpt import translate as cfg

GPT2 = {"family": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32,
        "tokenizer": {"type": "train", "vocab_size": 400}}


def nano_job(tmp: Path, repo: Path | None = None, **over) -> dict:
    job = tiny_pretrain_job(tmp)
    job["model"] = {"init": dict(GPT2)}
    job = merge(job, {"backend": {"type": "nanogpt", "repo": str(repo or tmp)},
                      "train": {"max_steps": 12, "eval_every": 6, "on_nonfinite": "stop"}})
    return merge(job, over)


def facts(tmp: Path, **kw) -> cfg.Facts:
    base = dict(run_dir=tmp / "run", data_dir=tmp / "run" / "data", device="cpu", bf16=False, processes=1,
                train_tokens=50_000, val_tokens=5_000)
    return cfg.Facts(**{**base, **kw})


def test_every_value_has_the_type_of_nanogpts_default(tmp_path):
    values = cfg.settings(validate(nano_job(tmp_path)), facts(tmp_path))
    assert list(values) == list(cfg.KEYS)
    for key, value in values.items():
        assert type(value) is cfg.KEYS[key], key  # `type(x) == type(default)` is nanoGPT's rule
    assert values["dropout"] == 0.0 and type(values["dropout"]) is float
    assert values["grad_clip"] == 1.0 and values["max_iters"] == 12 and values["lr_decay_iters"] == 12


def test_rendered_file_runs_as_python_and_gives_the_values(tmp_path):
    job = validate(nano_job(tmp_path, optim={"type": "adamw", "lr": 1e-3, "betas": [0.9, 0.99]},
                                schedule={"warmup_steps": 2, "min_lr_ratio": 0.1}))
    values = cfg.settings(job, facts(tmp_path))
    namespace: dict = {}
    exec(cfg.render(values, ["a header"]), namespace)  # what configurator.py does with a config file
    assert {k: namespace[k] for k in values} == values
    assert (values["learning_rate"], values["beta2"], values["warmup_iters"]) == (1e-3, 0.99, 2)
    assert values["min_lr"] == pytest.approx(1e-4)


def test_data_folder_is_absolute_so_nanogpts_join_keeps_it(tmp_path):
    values = cfg.settings(validate(nano_job(tmp_path)), facts(tmp_path))
    assert os.path.join("data", values["dataset"]) == str(tmp_path / "run" / "data")  # train.py's data_dir
    assert values["out_dir"] == str(tmp_path / "run")


def test_host_choices(tmp_path):
    job = validate(nano_job(tmp_path, train={"precision": "auto"}))
    cpu = cfg.settings(job, facts(tmp_path))
    assert (cpu["device"], cpu["dtype"], cpu["compile"], cpu["backend"]) == ("cpu", "float32", False, "gloo")
    gpu = cfg.settings(job, facts(tmp_path, device="cuda", bf16=True, processes=4))
    assert (gpu["device"], gpu["dtype"], gpu["compile"], gpu["backend"]) == ("cuda", "bfloat16", True, "nccl")
    assert gpu["gradient_accumulation_steps"] == 4  # grad_accum 1 per process x 4 processes
    fp16 = validate(nano_job(tmp_path, train={"precision": "fp16"}))
    assert cfg.settings(fp16, facts(tmp_path, device="cuda", bf16=True))["dtype"] == "float16"
    with pytest.raises(ValueError, match="no bf16"):
        cfg.settings(validate(nano_job(tmp_path, train={"precision": "bf16"})), facts(tmp_path, device="cuda"))


def test_dry_run_is_iteration_zero_with_one_eval_batch(tmp_path):
    values = cfg.settings(validate(nano_job(tmp_path)), facts(tmp_path, dry_run=True))
    assert (values["max_iters"], values["eval_iters"], values["lr_decay_iters"]) == (0, 1, 12)
    resumed = cfg.settings(validate(nano_job(tmp_path)), facts(tmp_path, dry_run=True, start_step=6))
    assert resumed["max_iters"] == 6  # a resumed dry run is the one iteration after the checkpoint


def test_epochs_and_eval_batches(tmp_path):
    job = validate(nano_job(tmp_path, train={"max_steps": None, "epochs": 2.0, "eval_every": None,
                                             "eval_batches": None}))
    f = facts(tmp_path, train_tokens=8 * 32 * 10 + 5, val_tokens=8 * 32 * 3)
    assert cfg.max_steps(job, f) == 20  # 10 steps of 8 x 32 tokens per epoch
    values = cfg.settings(job, f)
    assert (values["max_iters"], values["eval_interval"], values["eval_iters"]) == (20, 20, 3)


def test_eval_every_must_divide_the_steps(tmp_path):
    job = validate(nano_job(tmp_path, train={"max_steps": None, "epochs": 1.0, "eval_every": 7}))
    with pytest.raises(ValueError, match="must divide"):
        cfg.settings(job, facts(tmp_path, train_tokens=8 * 32 * 10))


def test_lr_is_nanogpts_schedule(tmp_path):
    s = {"decay_lr": True, "learning_rate": 1.0, "warmup_iters": 4, "lr_decay_iters": 14, "min_lr": 0.1}
    assert cfg.lr_at(0, s) == pytest.approx(1 / 5) and cfg.lr_at(3, s) == pytest.approx(4 / 5)
    assert cfg.lr_at(4, s) == pytest.approx(1.0) and cfg.lr_at(9, s) == pytest.approx(0.55)
    assert cfg.lr_at(14, s) == pytest.approx(0.1) and cfg.lr_at(20, s) == 0.1
    assert cfg.lr_at(7, {**s, "decay_lr": False}) == 1.0


@pytest.mark.parametrize("bias", [True, False])
def test_param_counts_match_a_built_gpt2(bias):
    from transformers import GPT2Config, GPT2LMHeadModel

    arch = {"n_layer": 3, "n_head": 4, "n_embd": 64, "block_size": 48, "bias": bias}
    model = GPT2LMHeadModel(GPT2Config(vocab_size=500, n_positions=48, n_embd=64, n_layer=3, n_head=4))
    hf = sum(p.numel() for p in model.parameters())  # tied head counted once; HF GPT-2 always has biases
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    total, matmul = cfg.param_counts(arch, 500)
    assert total == (hf if bias else hf - biases)
    assert matmul == total - 48 * 64  # the position embedding is a lookup


def test_checkout_reader(tmp_path):
    (tmp_path / "train.py").write_text(
        "import os\nout_dir = 'out'\nsteps = 5 * 8\nrate = 6e-4\nflag = True\n"
        "kind = 'a' if os.environ else 'b'\nlater = 1\nexec(open('configurator.py').read())\nafter = 2\n")
    assert cfg.checkout_defaults(tmp_path) == {"out_dir": str, "steps": int, "rate": float, "flag": bool,
                                              "kind": str, "later": int}
    problems = cfg.checkout_problems(tmp_path)
    assert "its train.py has no setting 'batch_size', which trainhub writes" in problems
    assert not any("'out_dir'" in p for p in problems)


def fake_checkout(tmp: Path) -> Path:
    """A folder with train.py defining every key trainhub writes (typed as nanoGPT's), for check()."""
    repo = tmp / "checkout"
    repo.mkdir()
    samples = {str: "'x'", int: "1", float: "1.0", bool: "False"}
    (repo / "train.py").write_text("\n".join(f"{k} = {samples[t]}" for k, t in cfg.KEYS.items()) + "\n")
    (repo / "configurator.py").write_text("")
    (repo / "model.py").write_text("")
    return repo


def problems(tmp: Path, job: dict, host: Host = Host()) -> list[str]:
    return [str(p) for p in RUNNERS["nanogpt"].check(validate(job), host)]


def test_check_accepts_a_plain_gpt2_job(tmp_path):
    assert problems(tmp_path, nano_job(tmp_path, fake_checkout(tmp_path))) == []


def test_check_names_every_unsupported_feature(tmp_path):
    job = nano_job(tmp_path, fake_checkout(tmp_path),
                   adapter={"type": "lora"}, data={"max_length": 16, "shuffle": False},
                   optim={"type": "adamw", "eps": 1e-6}, schedule={"decay": "linear"},
                   train={"grad_checkpointing": True, "eval_every": 5, "save_every": 4, "on_nonfinite": "skip"})
    found = "\n".join(problems(tmp_path, job))
    for key in ("adapter.type", "data.max_length", "data.shuffle", "optim.eps", "schedule.decay",
                "train.grad_checkpointing", "train.eval_every", "train.save_every", "train.on_nonfinite"):
        assert f"{key}: nanogpt: " in found, key


def test_check_refuses_a_llama_and_a_missing_checkout(tmp_path):
    job = tiny_pretrain_job(tmp_path, backend={"type": "nanogpt", "repo": str(tmp_path / "nowhere")})
    found = "\n".join(problems(tmp_path, job))
    assert "model.init.family: nanogpt: nanoGPT's model is GPT-2" in found
    assert f"{tmp_path / 'nowhere'} is not a nanoGPT checkout: no train.py" in found


def test_check_refuses_more_processes_than_gpus(tmp_path):
    job = nano_job(tmp_path, fake_checkout(tmp_path), backend={"processes": 2})
    assert problems(tmp_path, job, Host(gpus=("H100",))) == \
        ["backend.processes: 2 processes need 2 GPUs; this host has 1"]


def test_native_refuses_gpt2(tmp_path):
    job = nano_job(tmp_path, backend="native")
    assert any("model.init.family: native builds llama and qwen2" in p for p in
               [str(p) for p in RUNNERS["native"].check(validate(job), Host())])



def test_gpt2_architecture_in_the_schema(tmp_path):
    from trainhub.jobfile import JobError

    job = validate(nano_job(tmp_path))
    assert (job.model.init.family, job.model.init.n_embd, job.model.init.dropout) == ("gpt2", 32, 0.0)
    llama = tiny_pretrain_job(tmp_path)
    del llama["model"]["init"]["family"]  # no family: a llama, as before gpt2 existed
    assert validate(llama).model.init.family == "llama"
    for init, message in (({"n_heads": 2}, "unknown key 'model.init.n_heads'; did you mean 'model.init.n_head'?"),
                          ({"family": "gpt3"}, "model.init.family: 'gpt3' is not one of llama, qwen2, qwen3, gpt2"),
                          ({"n_head": 3}, "n_embd 32 is not divisible by n_head 3")):
        with pytest.raises(JobError) as err:
            validate(merge(nano_job(tmp_path), {"model": {"init": init}}))
        assert message in str(err.value)


def test_where_model_path_finds_the_checkpoint_and_tokenizer(tmp_path):
    from trainhub.runners.nanogpt.source import find_ckpt, find_tokenizer

    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000006"
    step.mkdir(parents=True)
    (step / "ckpt.pt").write_bytes(b"x")
    (step / "state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("step-00000006\n")
    (run / "tokenizer").mkdir()
    (run / "tokenizer" / "tokenizer.json").write_text("{}")
    assert find_ckpt(run) == find_ckpt(step) == find_ckpt(step / "ckpt.pt") == step / "ckpt.pt"
    assert find_tokenizer(step / "ckpt.pt") == run / "tokenizer"  # the run folder's
    out = tmp_path / "out"  # nanoGPT's own out_dir with a tokenizer put beside it
    (out / "tokenizer").mkdir(parents=True)
    (out / "ckpt.pt").write_bytes(b"x")
    (out / "tokenizer" / "tokenizer_config.json").write_text("{}")
    assert find_ckpt(out) == out / "ckpt.pt" and find_tokenizer(out / "ckpt.pt") == out / "tokenizer"
    assert find_ckpt(tmp_path / "empty") is None


def test_several_gpus_go_through_torchrun(tmp_path):
    import sys

    from trainhub.runners.nanogpt.child import _command

    cfg_file = tmp_path / "nanogpt_config.py"
    assert _command(cfg_file, 1) == [sys.executable, "train.py", str(cfg_file)]
    assert _command(cfg_file, 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     "--nproc_per_node=4", "train.py", str(cfg_file)]


def test_auto_picks_nanogpt_for_a_gpt2_job_when_a_checkout_is_known(tmp_path, monkeypatch):
    from trainhub.runners import choose

    monkeypatch.setenv("NANOGPT_DIR", str(fake_checkout(tmp_path)))
    job = validate(nano_job(tmp_path, backend="auto"))
    runner, reasons = choose(job, Host())
    assert runner.name == "nanogpt" and reasons[0].startswith("native: not usable: model.init.family")
    assert cfg.settings(job, facts(tmp_path, device="cuda"))["compile"] is True  # nanoGPT's default
