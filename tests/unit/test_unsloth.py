"""Backend `unsloth` without a GPU: the translation of a job into Unsloth's calls, the check, the launch.

Unsloth itself cannot even be imported without a GPU, so on CPU the runner is tested up to the
child's command line; tests/gpu/test_unsloth.py trains through it on a GPU.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, merge, run_cli, tiny_pretrain_job, write_job
from trainhub import host as host_mod
from trainhub.host import Host
from trainhub.jobfile import Problem, load
from trainhub.runners import RUNNERS, choose
from trainhub.runners.unsloth.runner import NO_GPU, OFFLINE, UnslothRunner
from trainhub.runners.unsloth.translate import changed_settings, load_args, notes_for, peft_args, unsloth_spec

GPU = Host(gpus=("NVIDIA H100 80GB HBM3",), cpu="x86_64", cores=16)
CPU = Host(gpus=(), cpu="x86_64", cores=2)
WIDE = {"COLUMNS": "300"}


def _job(tmp_path: Path, model_path: Path, **over) -> Path:
    job = tiny_pretrain_job(tmp_path)
    job.update({"name": "unsloth-unit", "backend": "unsloth", "model": {"path": str(model_path)}, "method": "sft",
                "adapter": {"type": "lora", "rank": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "v_proj"]},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages", "max_length": 256}})
    job["train"].update({"precision": "bf16", "grad_checkpointing": True, "on_nonfinite": "stop"})
    return write_job(tmp_path / "job.yaml", merge(job, over))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


def test_lora_translation(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir))
    assert load_args(job) == {
        "model_name": str(model_dir), "max_seq_length": 256, "dtype": "bfloat16", "load_in_4bit": False,
        "load_in_8bit": False, "load_in_16bit": True, "full_finetuning": False,
        "use_gradient_checkpointing": "unsloth", "trust_remote_code": False, "use_exact_model_name": True,
        "random_state": 0}
    assert peft_args(job) == {
        "r": 8, "lora_alpha": 16.0, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "bias": "none",
        "use_gradient_checkpointing": "unsloth", "random_state": 0, "use_rslora": False, "max_seq_length": 256}


def test_qlora_translation(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir, adapter={"type": "qlora", "rank": 4, "alpha": 4, "targets": "all-linear"},
                    train={"precision": "fp16", "grad_checkpointing": False, "max_steps": 3}, seed=7))
    args = load_args(job)
    assert (args["load_in_4bit"], args["load_in_16bit"], args["full_finetuning"]) == (True, False, False)
    assert args["dtype"] == "float16" and args["use_gradient_checkpointing"] is False and args["random_state"] == 7
    peft = peft_args(job)
    assert (peft["r"], peft["lora_alpha"], peft["target_modules"]) == (4, 4.0, "all-linear")
    assert peft["use_gradient_checkpointing"] is False
    assert any("4-bit NF4" in n for n in notes_for(job))


def test_full_translation(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir, adapter="full", train={"precision": "auto", "max_steps": 3}))
    args = load_args(job)
    assert (args["load_in_4bit"], args["load_in_16bit"], args["full_finetuning"]) == (False, False, True)
    assert args["dtype"] is None  # auto: Unsloth picks bf16 where the GPU has it
    assert peft_args(job) is None
    # model.dtype float32 (the default) cannot hold on Unsloth: said, not dropped
    assert any("not float32" in n for n in notes_for(job))


def _grpo(tmp_path: Path, model_dir: Path, algorithm: str, **method) -> Path:
    return _job(tmp_path, model_dir, method={
        "type": "grpo", "algorithm": algorithm, "group_size": 4, "max_new_tokens": 16, "kl_beta": 0.0, **method,
        "rewards": [{"function": "trainhub.rewards:exact_match"}, {"function": "trainhub.rewards:answer_format",
                                                                  "weight": 0.2}]},
        data={"train": str(ROOT / "config/data/arithmetic.jsonl"), "format": "prompt", "max_length": 96,
              "overlong": "drop"}, train={"micro_batch_size": 8, "max_steps": 3})


@pytest.mark.parametrize("algorithm, loss_type, eps_high, scale, mask", [
    ("grpo", "grpo", 0.2, "group", False), ("dr_grpo", "dr_grpo", 0.2, "none", False),
    ("dapo", "dapo", 0.28, "group", True), ("gspo", "grpo", 4e-4, "group", False)])
def test_grpo_translation_sets_what_unsloth_would_change(tmp_path, model_dir, algorithm, loss_type, eps_high,
                                                         scale, mask):
    """Unsloth's GRPOConfig defaults loss_type and beta itself and forces epsilon_high 0.28 for dapo: every
    one of these is set from the job, so Unsloth has nothing left to choose."""
    job = load(_grpo(tmp_path, model_dir, algorithm))
    spec = unsloth_spec(job, Path(job.output_dir), "bf16", total_steps=3)
    args = spec["args"]
    assert (spec["module"], spec["config"], spec["trainer"]) == ("trl", "GRPOConfig", "GRPOTrainer")
    assert (args["loss_type"], args["epsilon_high"], args["scale_rewards"], args["mask_truncated_completions"]) \
        == (loss_type, eps_high, scale, mask)
    assert args["beta"] == 0.0 and args["num_generations"] == 4 and args["max_completion_length"] == 16
    assert args["gradient_checkpointing"] is False and "gradient_checkpointing_kwargs" not in args  # Unsloth's own
    assert (args["bf16"], args["fp16"]) == (True, False)
    assert load_args(job)["use_gradient_checkpointing"] == "unsloth"
    # the model sees prompt (data.max_length) + completion (max_new_tokens): Unsloth sizes its rotary cache so
    assert load_args(job)["max_seq_length"] == peft_args(job)["max_seq_length"] == job.data.max_length + 16
    kl = load(_grpo(tmp_path, model_dir, "grpo", kl_beta=0.04, clip_high=0.3))
    assert {"beta": 0.04, "epsilon_high": 0.3, "fp16": True, "bf16": False}.items() \
        <= unsloth_spec(kl, Path(kl.output_dir), "fp16")["args"].items()


def test_sft_trainer_translation(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir, train={"max_steps": 5, "log_every": 2}))
    args = unsloth_spec(job, Path(job.output_dir), "bf16", dry_run=True, resume_step=4)["args"]
    assert (args["max_length"], args["max_steps"], args["logging_steps"], args["per_device_train_batch_size"]) \
        == (256, 5, 2, 8)  # dry run: one step past the resumed one
    assert args["loss_type"] == "nll" and args["packing"] is False


@pytest.mark.parametrize(("method", "module", "config", "trainer", "wanted"), [
    ({"type": "orpo", "beta": 0.2}, "trl.experimental.orpo", "ORPOConfig", "ORPOTrainer",
     {"beta": 0.2, "max_length": 128, "remove_unused_columns": False}),
    ({"type": "kto", "beta": 0.3, "desirable_weight": 1.0, "undesirable_weight": 1.5}, "trl", "KTOConfig",
     "KTOTrainer", {"beta": 0.3, "desirable_weight": 1.0, "undesirable_weight": 1.5, "max_length": 128,
                    "loss_type": "kto", "precompute_ref_log_probs": False})])
def test_preference_methods_translate_as_the_trl_backend(tmp_path, model_dir, monkeypatch, method, module, config,
                                                         trainer, wanted):
    """ORPO and KTO: TRL's classes and the trl backend's settings, Unsloth's differences on top (its own
    checkpointing, bf16 from the weights), and the check lets them through."""
    from trainhub import envs
    from trainhub.runners.trl.translate import translate

    monkeypatch.setattr(envs, "python_of", lambda backend: Path(sys.executable))
    job = load(_job(tmp_path, model_dir, method=method, data={
        "train": str(ROOT / "config/data/preference.jsonl"), "format": "preference", "max_length": 128}))
    spec = unsloth_spec(job, Path(job.output_dir), "bf16")
    assert (spec["module"], spec["config"], spec["trainer"]) == (module, config, trainer)
    args = spec["args"]
    assert {k: args[k] for k in wanted} == wanted
    assert args["gradient_checkpointing"] is False and args["bf16"] is True and args["fp16"] is False
    trl_args = translate(job, Path(job.output_dir), cuda=True, bf16_ok=True)["args"]
    assert {k: v for k, v in args.items() if k not in ("gradient_checkpointing", "gradient_checkpointing_kwargs")} \
        == {k: v for k, v in trl_args.items() if k not in ("gradient_checkpointing", "gradient_checkpointing_kwargs")}
    assert UnslothRunner().check(job, GPU) == []


def test_changed_settings_are_said():
    class Args:
        loss_type, beta, epsilon_high, report_to = "bnpo", 0.001, 0.28, []

    wanted = {"loss_type": "grpo", "beta": 0.0, "epsilon_high": 0.28, "report_to": "none"}
    assert changed_settings(wanted, Args()) == ["unsloth changed loss_type from 'grpo' to 'bnpo'",
                                                "unsloth changed beta from 0.0 to 0.001"]


def test_check_on_a_machine_without_a_gpu(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir, model={"path": str(model_dir)}))
    assert UnslothRunner().check(job, CPU) == [Problem("backend", NO_GPU)]
    assert NO_GPU == "unsloth needs an NVIDIA, AMD or Intel GPU; none found — backends native or trl run here"


ROCM_SMI = """\
============================ ROCm System Management Interface ============================
====================================== Product Info ======================================
GPU[0] : Card Series: AMD Instinct MI300X
GPU[0] : Card Vendor: Advanced Micro Devices, Inc. [AMD/ATI]
GPU[0] : GFX Version: gfx942
GPU[1] : Card Series: AMD Instinct MI250X
GPU[1] : Card Vendor: Advanced Micro Devices, Inc. [AMD/ATI]
==========================================================================================
"""


def fake_tool(tmp_path: Path, monkeypatch, name: str, args: str, output: str) -> None:
    """A vendor's GPU tool on PATH that prints `output` when called with exactly `args`, and fails else."""
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / name
    tool.write_text(f"#!/bin/sh\n[ \"$*\" = \"{args}\" ] || exit 2\ncat <<'EOF'\n{output}EOF\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")


def test_amd_gpus_are_found_with_rocm_smi_and_pass_the_gpu_check(tmp_path, model_dir, monkeypatch):
    """An AMD machine: rocm-smi's product list gives the GPUs, HIP_VISIBLE_DEVICES narrows them, and
    unsloth's check no longer stops at the GPU (the environment check comes next)."""
    from trainhub import host

    fake_tool(tmp_path, monkeypatch, "rocm-smi", "--showproductname", ROCM_SMI)
    monkeypatch.delenv("ROCR_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("HIP_VISIBLE_DEVICES", raising=False)
    assert host._amd_gpus() == ("AMD Instinct MI300X", "AMD Instinct MI250X")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    assert host._amd_gpus() == ("AMD Instinct MI250X",)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "")
    assert host._amd_gpus() == ()
    amd = Host(amd_gpus=("AMD Instinct MI300X",), cores=2)
    assert amd.describe() == "1 x AMD Instinct MI300X (AMD)" and not amd.has_gpu
    job = load(_job(tmp_path, model_dir, model={"path": str(model_dir)}))
    assert Problem("backend", NO_GPU) not in UnslothRunner().check(job, amd)


XPU_SMI = """Device ID,Device Name
0,"Intel(R) Data Center GPU Max 1550"
1,"Intel(R) Data Center GPU Max 1100"
"""


def test_intel_gpus_are_found_with_xpu_smi_and_pass_the_gpu_check(tmp_path, model_dir, monkeypatch):
    """An Intel machine: xpu-smi's CSV dump gives the GPUs in device-id order, ZE_AFFINITY_MASK narrows
    them (whole devices only), and unsloth's check no longer stops at the GPU."""
    from trainhub import host

    fake_tool(tmp_path, monkeypatch, "xpu-smi", "discovery --dump 1,2", XPU_SMI)
    monkeypatch.delenv("ZE_AFFINITY_MASK", raising=False)
    both = ("Intel(R) Data Center GPU Max 1550", "Intel(R) Data Center GPU Max 1100")
    assert host._intel_gpus() == both
    monkeypatch.setenv("ZE_AFFINITY_MASK", "1")
    assert host._intel_gpus() == both[1:]
    monkeypatch.setenv("ZE_AFFINITY_MASK", "0.1")  # a sub-device: the device list stays whole
    assert host._intel_gpus() == both
    monkeypatch.setenv("ZE_AFFINITY_MASK", "")
    assert host._intel_gpus() == ()
    intel = Host(intel_gpus=both[:1], cores=2)
    assert intel.describe() == "1 x Intel(R) Data Center GPU Max 1550 (Intel)" and not intel.has_gpu
    job = load(_job(tmp_path, model_dir, model={"path": str(model_dir)}))
    assert Problem("backend", NO_GPU) not in UnslothRunner().check(job, intel)
    assert Problem("backend", NO_GPU) in UnslothRunner().check(job, CPU)


def test_auto_never_picks_unsloth_without_a_gpu(tmp_path, model_dir):
    job = load(_job(tmp_path, model_dir), backend="auto")
    runner, reasons = choose(job, CPU)
    assert runner.name != "unsloth"
    assert any(line.startswith("unsloth: not usable") and NO_GPU in line for line in reasons)


def test_check_names_what_unsloth_cannot_do(tmp_path, model_dir, monkeypatch):
    from trainhub import envs

    monkeypatch.setattr(envs, "python_of", lambda backend: Path(sys.executable))
    job = load(_job(tmp_path, model_dir, model={"path": str(model_dir), "attention": "eager"},
                    train={"precision": "fp32", "max_steps": 3}))
    problems = {p.where: p.message for p in UnslothRunner().check(job, GPU)}
    assert set(problems) == {"model.attention", "train.precision"}
    init = load(write_job(tmp_path / "init.yaml", tiny_pretrain_job(
        tmp_path, backend="unsloth", method="sft", data={"train": str(ROOT / "config/data/chat_eval.jsonl"),
                                                         "format": "messages", "eval": []},
        train={"precision": "bf16", "on_nonfinite": "stop"})))
    problems = {p.where for p in UnslothRunner().check(init, GPU)}
    assert problems == {"model.init"}
    ok = load(_job(tmp_path, model_dir))
    assert UnslothRunner().check(ok, GPU) == []


def test_check_without_the_environment(tmp_path, model_dir, monkeypatch):
    from trainhub import envs

    monkeypatch.setattr(envs, "python_of", lambda backend: None)
    problems = UnslothRunner().check(load(_job(tmp_path, model_dir)), GPU)
    assert [p.where for p in problems] == ["backend"]
    assert "trainhub env setup unsloth" in problems[0].message


def test_launch(tmp_path, model_dir, monkeypatch):
    from trainhub import envs

    python = tmp_path / "venv" / "bin" / "python"
    monkeypatch.setattr(envs, "python_of", lambda backend: python)
    job = load(_job(tmp_path, model_dir))
    run_dir = Path(job.output_dir)
    launch = RUNNERS["unsloth"].prepare(job, run_dir, dry_run=True, resume=run_dir / "checkpoints" / "x")
    assert launch.argv == [str(python), "-m", "trainhub.runners.unsloth.child", "--run-dir", str(run_dir),
                           "--dry-run", "--resume", str(run_dir / "checkpoints" / "x")]
    assert launch.cwd == run_dir
    assert launch.env["UNSLOTH_COMPILE_LOCATION"] == str(run_dir / "unsloth_compiled_cache")
    assert OFFLINE.items() <= launch.env.items()  # a local model: nothing reaches for the hub
    hub = load(_job(tmp_path, model_dir, model={"path": "someorg/some-model"}))
    assert not OFFLINE.keys() & RUNNERS["unsloth"].prepare(hub, run_dir).env.keys()


def test_plan_shows_what_the_child_calls(tmp_path, model_dir):
    lines = UnslothRunner().plan_lines(load(_job(tmp_path, model_dir, adapter={"type": "qlora"})))
    assert lines[0].startswith("unsloth: FastLanguageModel.from_pretrained(model_name=") and \
        "load_in_4bit=True" in lines[0]
    assert lines[1].startswith("unsloth: FastLanguageModel.get_peft_model(model, r=8")
    assert "trl.SFTTrainer" in lines[2] and "  gradient_checkpointing = false" in lines


def test_child_imports_unsloth_first():
    """Unsloth patches transformers, trl and peft when imported: nothing heavy may come before it."""
    source = (ROOT / "backend/trainhub/runners/unsloth/child.py").read_text()
    imports = [n for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [n.names[0].name if isinstance(n, ast.Import) else n.module for n in imports]
    names = [n for n in names if n != "__future__"]
    assert names[0] == "unsloth", names


def test_the_child_package_path_imports_nothing_heavy():
    """`python -m trainhub.runners.unsloth.child` runs trainhub.runners' and trainhub.runners.unsloth's
    __init__ before the child's own `import unsloth`: they must not load transformers, trl, peft or torch."""
    code = "import sys, trainhub.runners, trainhub.runners.unsloth; " \
           "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.skipif(host_mod.detect().has_gpu, reason="checks the machine without a GPU")
def test_train_refuses_before_any_work(tmp_path, model_dir):
    done = run_cli("train", "--config", str(_job(tmp_path, model_dir)), env=WIDE)
    assert done.returncode == 1
    assert NO_GPU in done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started, not even the run folder
    plan = run_cli("plan", "--config", str(_job(tmp_path, model_dir)), "--backend", "auto", env=WIDE)
    assert plan.returncode == 0, plan.stderr
    assert f"unsloth: not usable: backend: {NO_GPU}" in plan.stdout


def test_native_trains_qlora_with_torchao_and_names_it_when_missing(tmp_path, model_dir, monkeypatch):
    job = load(_job(tmp_path, model_dir, backend="native", adapter={"type": "qlora"}))
    assert "adapter.type" not in {p.where for p in RUNNERS["native"].check(job, CPU)}
    import trainhub.runners.native.runner as native_runner

    monkeypatch.setattr(native_runner, "missing_modules", lambda *names: [n for n in names if n == "torchao"])
    problems = {p.where: p.message for p in RUNNERS["native"].check(job, CPU)}
    assert "torchao" in problems["adapter.type"] and "trainhub[qlora]" in problems["adapter.type"]


def test_counting_collator_sums_the_attention_masks():
    import torch

    from trainhub.runners.trl.data import CountingCollator

    masked = CountingCollator(lambda rows: {"chosen_attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
                                            "rejected_attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])})
    masked([])
    masked([])
    assert masked.tokens == 14


def test_pad_collator_matches_transformers_seq2seq_collator():
    """trainhub's SFT padding gives what DataCollatorForSeq2Seq(tokenizer) gives (the collator Unsloth's
    SFTTrainer would pick), ids, labels and mask alike, and counts the real tokens."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from trainhub.data.tokenizer import train_bpe
    from trainhub.runners.trl.data import PadCollator

    texts = [line for line in (ROOT / "config/data/stories.jsonl").read_text().splitlines()[:50]]
    tok = train_bpe(texts, 300, 2, template="chatml")
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9]},
            {"input_ids": [10, 11], "labels": [10, 11]},
            {"input_ids": [12, 13, 14], "labels": [-100, 13, -100]}]
    ours = PadCollator(tok.pad_token_id)
    got = ours(rows)
    want = DataCollatorForSeq2Seq(tok, padding=True)([dict(r) for r in rows])
    assert set(got) == {"input_ids", "labels", "attention_mask"}
    for key in got:
        assert got[key].dtype == torch.int64 and torch.equal(got[key], want[key]), key


def test_adopted_environment_keeps_the_callers_pythonpath(monkeypatch):
    """On the GPU machine Unsloth's wheels are unpacked into a folder named by PYTHONPATH: adopting the
    interpreter, and running the child, must keep it behind trainhub's own path."""
    import os

    from trainhub.envs import PACKAGE_PARENT, child_env_adopted

    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    assert child_env_adopted()["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE_PARENT), "/tmp/site"]


def test_import_check_runs_in_a_folder_of_its_own():
    """`import unsloth` writes ./unsloth_compiled_cache: never into the folder `env setup` runs in."""
    import os

    from trainhub.envs import EnvSpec, import_check

    spec = EnvSpec(backend="probe", check="import json, os; print(json.dumps({'cwd': os.getcwd()}))", lock=None,
                   notes="")
    cwd = import_check(spec, Path(sys.executable))["cwd"]
    assert cwd != os.getcwd() and "trainhub-envcheck-" in cwd
