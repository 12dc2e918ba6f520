"""Several processes on CPU (gloo), started by the real `train` through the real torchrun: DDP and FSDP2
train the curve one process trains with the same global batch, a checkpoint of 2 processes resumes on 1
and on 2, and a rank that dies takes the job down with an error row naming it."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job

pytestmark = pytest.mark.slow  # each run starts 2 engine processes (~40 s on 2 cores)

STEPS = 6
TOL = 1e-5  # fp32: the same sums in another order


def _job(tmp_path, name: str, processes: int, strategy: str = "auto", **train) -> dict:
    # global batch 8 every time: micro 4 x accum (4 / processes) x processes
    job = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / name), train={
        "micro_batch_size": 4, "grad_accum": 2 // processes, "max_steps": STEPS, "save_every": 3, "keep_last": 5,
        "eval_every": 3, **train})
    job["distributed"] = {"nproc_per_node": processes, "strategy": strategy}
    return job


def _train(tmp_path, job: dict, *extra: str, env: dict | None = None):
    config = write_job(tmp_path / f"{job['output_dir'].rsplit('/', 1)[-1]}.yaml", job)
    return run_cli("train", "--config", str(config), *extra, env=env)


def _losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in rows(run_dir, "train")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, 2-process DDP, 2-process FSDP2 and FSDP2 in one process (a group of one, no torchrun),
    each 6 steps of global batch 8."""
    tmp = tmp_path_factory.mktemp("dist")
    out = {}
    for name, processes, strategy in (("one", 1, "auto"), ("ddp", 2, "ddp"), ("fsdp2", 2, "fsdp2"),
                                      ("fsdp2-alone", 1, "fsdp2")):
        done = _train(tmp, _job(tmp, name, processes, strategy))
        assert done.returncode == 0, done.stdout + done.stderr
        out[name] = tmp / name
    return tmp, out


@pytest.mark.parametrize("name", ["ddp", "fsdp2", "fsdp2-alone"])
def test_two_processes_train_the_one_process_curve(runs, name):
    _tmp, run = runs
    one, two = _losses(run["one"]), _losses(run[name])
    assert sorted(two) == list(range(1, STEPS + 1))
    assert two == pytest.approx(one, abs=TOL)
    evals = {r["step"]: r["eval_loss"] for r in rows(run[name], "eval")}
    assert evals == pytest.approx({r["step"]: r["eval_loss"] for r in rows(run["one"], "eval")}, abs=TOL)
    train = rows(run[name], "train")
    assert [r["tokens"] for r in train] == [r["tokens"] for r in rows(run["one"], "train")]  # global tokens
    world = 1 if name.endswith("alone") else 2
    if world > 1:
        assert all(r["mem_gb_spread"] >= 0 and r["step_s_slowest"] > 0 for r in train)
    start = rows(run[name], "start")[0]
    strategy = name.split("-")[0]
    assert start["tokens_per_step"] == 8 * 32 and f"distributed: {strategy} over {world} process(es)" in " ".join(
        start["notes"])
    assert len(rows(run[name], "start")) == 1 and len(rows(run[name], "end")) == 1  # rank 0 alone writes
    checkpoint = run[name] / "checkpoints" / "step-00000003"
    assert (checkpoint / "dcp" / ".metadata").is_file() and (checkpoint / "state.json").is_file()
    final = run[name] / "final"  # a plain HF folder, as one process writes it
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    from safetensors.torch import load_file

    got, want = load_file(final / "model.safetensors"), load_file(run["one"] / "final" / "model.safetensors")
    assert got.keys() == want.keys()
    for key in want:
        assert (got[key] - want[key]).abs().max() < 1e-4, key


@pytest.mark.parametrize("processes,strategy", [(1, "auto"), (2, "fsdp2")])
def test_two_process_checkpoint_resumes_on_one_and_two(runs, processes, strategy):
    """From the DDP run's step-3 checkpoint: on 1 process (grad_accum 2) and on 2 (FSDP2: DCP reshards), the
    curve goes on as the uninterrupted run's."""
    tmp, run = runs
    name = f"resume-{processes}"
    shutil.copytree(run["ddp"], tmp / name)
    for later in ("step-00000006",):
        shutil.rmtree(tmp / name / "checkpoints" / later)
    job = _job(tmp, name, processes, strategy)
    done = _train(tmp, job, "--resume", str(tmp / name / "checkpoints" / "step-00000003"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(tmp / name, "start")[-1]["step"] == 3
    assert _losses(tmp / name) == pytest.approx(_losses(run["ddp"]), abs=TOL)


def test_changed_global_batch_is_refused(runs):
    """1 process with grad_accum 1 halves the global batch: the hub refuses it, and with --resume-force the
    engine still does, since the data position would no longer mean the same examples."""
    tmp, run = runs
    shutil.copytree(run["ddp"], tmp / "batch")
    job = _job(tmp, "batch", 1, grad_accum=1)  # global batch 4, not 8
    done = _train(tmp, job, "--resume")
    assert done.returncode == 1 and "distributed.nproc_per_node: 2 -> 1" in done.stderr
    forced = _train(tmp, job, "--resume", "--resume-force", "--set", "train.max_steps=8")
    assert forced.returncode == 1
    errors = [r["message"] for r in rows(tmp / "batch", "error")]
    assert any("global batch of 8 sequences; this run's is 4" in m for m in errors), errors


def test_a_dead_rank_takes_the_job_down(tmp_path):
    job = _job(tmp_path, "dies", 2, max_steps=20, eval_every=None, save_every=None)
    t0 = time.time()
    done = _train(tmp_path, job, env={"TRAINHUB_INJECT_RANK_FAILURE": "1:3"})
    assert done.returncode != 0
    assert time.time() - t0 < 180  # never a hang
    errors = [r["message"] for r in rows(tmp_path / "dies", "error")]
    assert any(m.startswith("rank 1: RuntimeError: injected failure at step 3") for m in errors), errors
    assert rows(tmp_path / "dies", "end")[-1]["status"] == "failed"


def test_ctrl_c_stops_every_rank_at_one_step_and_resumes_on_one_process(runs):
    """Ctrl-C reaches torchrun's workers as SIGTERM: both ranks agree on the step, save it and exit; `train`
    exits 130 as with one process. The run then resumes on 1 process and continues the DDP curve."""
    from tests.integration.test_resume import _interrupt_after

    tmp, run = runs
    # a constant learning rate: the stopped run is planned for 40 steps and the others end 2 after the stop,
    # so a decaying schedule would give their common steps different rates (wherever the stop falls late)
    constant = {"warmup_steps": 0, "decay": "constant"}
    job = dict(_job(tmp, "stopped", 2, max_steps=40, save_every=None, eval_every=None), schedule=constant)
    config = write_job(tmp / "stopped.yaml", job)
    first = _interrupt_after(config, tmp / "stopped", min_step=2)
    assert first.returncode == 130, first.stdout
    end = rows(tmp / "stopped", "end")[-1]
    assert end["status"] == "interrupted" and 2 <= end["step"] < 40
    assert (tmp / "stopped" / "checkpoints" / f"step-{end['step']:08d}" / "dcp").is_dir()
    one = dict(_job(tmp, "stopped", 1, max_steps=end["step"] + 2, save_every=None, eval_every=None), schedule=constant)
    done = _train(tmp, one, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    straight = dict(_job(tmp, "straight", 1, max_steps=end["step"] + 2, save_every=None, eval_every=None),
                    schedule=constant)
    assert _train(tmp, straight).returncode == 0
    assert _losses(tmp / "stopped") == pytest.approx(_losses(tmp / "straight"), abs=TOL)


def test_lora_under_fsdp2_trains_the_one_process_adapter(runs):
    """LoRA over the one-process run's final model: FSDP2 on 2 processes shards frozen and trainable weights
    alike, and writes the same adapter and merged final/ as 1 process."""
    from safetensors.torch import load_file

    tmp, run = runs
    out = {}
    for name, processes, strategy in (("lora-one", 1, "auto"), ("lora-fsdp2", 2, "fsdp2")):
        job = _job(tmp, name, processes, strategy, max_steps=3, save_every=None, eval_every=None)
        job["model"] = {"path": str(run["one"] / "final")}
        job["adapter"] = {"type": "lora", "rank": 4}
        done = _train(tmp, job)
        assert done.returncode == 0, done.stdout + done.stderr
        out[name] = tmp / name
    assert _losses(out["lora-fsdp2"]) == pytest.approx(_losses(out["lora-one"]), abs=TOL)
    for file in ("adapter/adapter_model.safetensors", "final/model.safetensors"):
        got, want = load_file(out["lora-fsdp2"] / file), load_file(out["lora-one"] / file)
        assert got.keys() == want.keys()
        assert all((got[k] - want[k]).abs().max() < 1e-5 for k in want), file


@pytest.mark.parametrize("optim", [{"type": "muon", "lr": 1e-2}, {"type": "lion", "lr": 3e-3},
                                   {"type": "schedule_free_adamw", "lr": 2e-2}],
                         ids=lambda o: o["type"])
def test_other_optimizers_under_fsdp2_train_the_one_process_curve_and_resume(tmp_path, optim):
    """Muon on FSDP2's shards (each rank orthogonalises whole matrices it owns, scattered back), Lion and
    schedule-free AdamW (element-wise): 2 processes train the 1-process curve, and the step-3 checkpoint (their
    state as DTensors, through DCP; schedule-free's z and exp_avg_sq exist only after a first step, so the load's
    template gets them from the checkpoint's metadata) resumes on 2 processes onto the same curve."""
    muon = optim
    for name, processes, strategy in (("muon-one", 1, "auto"), ("muon-fsdp2", 2, "fsdp2")):
        job = _job(tmp_path, name, processes, strategy)
        job["optim"] = muon
        done = _train(tmp_path, job)
        assert done.returncode == 0, done.stdout + done.stderr
    one, two = _losses(tmp_path / "muon-one"), _losses(tmp_path / "muon-fsdp2")
    assert sorted(two) == list(range(1, STEPS + 1)) and two == pytest.approx(one, abs=1e-4)
    assert one[STEPS] < one[1] - 0.02  # it trains
    shutil.copytree(tmp_path / "muon-fsdp2", tmp_path / "muon-resume")
    shutil.rmtree(tmp_path / "muon-resume" / "checkpoints" / "step-00000006")
    job = _job(tmp_path, "muon-resume", 2, "fsdp2")
    job["optim"] = muon
    done = _train(tmp_path, job, "--resume", str(tmp_path / "muon-resume" / "checkpoints" / "step-00000003"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _losses(tmp_path / "muon-resume") == pytest.approx(two, abs=TOL)
