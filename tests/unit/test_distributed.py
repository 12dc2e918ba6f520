"""The `distributed` section without starting processes: the schema's refusals, the torchrun and srun
command lines, the resume rule that lets the number of processes change with grad_accum, which backends
refuse several processes, the SLURM script, and the pieces of the engine a process group goes through."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.conftest import tiny_pretrain_job
from trainhub.host import Host
from trainhub.job import Job
from trainhub.resume import job_changes
from trainhub.runners import RUNNERS
from trainhub.runners.nanogpt.translate import distributed_problems, processes_asked
from trainhub.runners.native.runner import NativeRunner
from trainhub.slurm import Allocation, SlurmError, sbatch_script


def _job(tmp_path, distributed: dict | None = None, **over) -> Job:
    raw = tiny_pretrain_job(tmp_path, **over)
    if distributed is not None:
        raw["distributed"] = distributed
    return Job.model_validate(raw)


@pytest.mark.parametrize("section,message", [
    ({"strategy": "single", "nproc_per_node": 2}, "strategy single is one process"),
    ({"strategy": "ddp", "nproc_per_node": 2, "fsdp2": {"cpu_offload": True}}, "fsdp2 options apply to strategy fsdp2"),
    ({"nnodes": 2, "nproc_per_node": 2}, "needs distributed.rendezvous.endpoint"),
    ({"nnodes": 2, "rendezvous": {"endpoint": "node01"}}, "is not host:port"),
    ({"launcher": "srun"}, "launcher srun starts torchrun on several processes"),
    ({"nproc_per_node": 0}, "greater than or equal to 1"),
    ({"procs": 2}, "Extra inputs are not permitted"),
])
def test_bad_sections_are_refused_by_name(tmp_path, section, message):
    with pytest.raises(ValidationError, match=message):
        _job(tmp_path, section)


def test_auto_is_single_for_one_process_and_ddp_for_several(tmp_path):
    assert _job(tmp_path).distributed.resolved == "single"
    assert _job(tmp_path, {"nproc_per_node": 4}).distributed.resolved == "ddp"
    assert _job(tmp_path, {"nproc_per_node": 4, "strategy": "fsdp2"}).distributed.world == 4


def test_one_process_runs_the_engine_directly(tmp_path):
    argv = NativeRunner().prepare(_job(tmp_path), tmp_path).argv
    assert argv[1:3] == ["-m", "trainhub.engine"] and "torch.distributed.run" not in argv


def test_several_processes_on_one_node_run_through_torchrun(tmp_path):
    job = _job(tmp_path, {"nproc_per_node": 2})
    argv = NativeRunner().prepare(job, tmp_path, dry_run=True).argv
    assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert argv[6:] == ["trainhub.engine", "--run-dir", str(tmp_path), "--dry-run"]


def test_several_nodes_meet_at_the_rendezvous(tmp_path):
    job = _job(tmp_path, {"nproc_per_node": 8, "nnodes": 4, "rendezvous": {"endpoint": "node01:29500"}})
    argv = NativeRunner().prepare(job, tmp_path).argv
    assert "--standalone" not in argv
    assert ["--nproc_per_node=8", "--nnodes=4", "--rdzv-backend=c10d", "--rdzv-endpoint=node01:29500",
            "--rdzv-id=tiny-pretrain"] == argv[3:8]
    srun = _job(tmp_path, {"nproc_per_node": 8, "nnodes": 4, "launcher": "srun",
                           "rendezvous": {"endpoint": "node01:29500", "id": "j7"}})
    argv = NativeRunner().prepare(srun, tmp_path).argv
    assert argv[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--rdzv-id=j7" in argv


def test_plan_shows_the_global_batch(tmp_path):
    job = _job(tmp_path, {"nproc_per_node": 2, "strategy": "fsdp2"}, train={"grad_accum": 3})
    lines = NativeRunner().plan_lines(job)
    assert "  distributed: fsdp2, 2 process(es); global batch 8 x 3 x 2 = 48 sequences" in lines


def test_native_refuses_what_fsdp2_cannot_shard_yet(tmp_path):
    job = _job(tmp_path, {"nproc_per_node": 2, "strategy": "fsdp2"}, optim={"type": "came", "lr": 1e-4})
    problems = NativeRunner().check(job, Host())
    assert [p.where for p in problems if "FSDP2" in p.message] == ["optim.type"]
    gpu = NativeRunner().check(_job(tmp_path, {"nproc_per_node": 2}), Host(gpus=("H100",)))
    assert any(p.where == "distributed.nproc_per_node" and "this host has 1" in p.message for p in gpu)
    offload = _job(tmp_path, {"strategy": "fsdp2", "fsdp2": {"cpu_offload": True}})
    assert any(p.where == "distributed.fsdp2.cpu_offload" for p in NativeRunner().check(offload, Host()))


@pytest.mark.parametrize("backend", ["trl", "unsloth", "llamafactory"])
def test_one_process_backends_refuse_several_by_name(tmp_path, backend):
    job = _job(tmp_path, {"nproc_per_node": 2}, backend=backend)
    problems = [p for p in RUNNERS[backend].check(job, Host(gpus=("H100",) * 2)) if p.where == "distributed"]
    assert len(problems) == 1 and problems[0].message.startswith(f"{backend} trains in one process")
    alone = _job(tmp_path, backend=backend)
    assert not [p for p in RUNNERS[backend].check(alone, Host(gpus=("H100",))) if p.where == "distributed"]


def test_nanogpt_takes_nproc_per_node_as_its_processes(tmp_path):
    job = _job(tmp_path, {"nproc_per_node": 2}, backend="nanogpt")
    assert processes_asked(job) == 2 and distributed_problems(job) == []
    assert processes_asked(_job(tmp_path, backend="nanogpt")) is None  # every visible GPU
    both = _job(tmp_path, {"nproc_per_node": 2}, backend={"type": "nanogpt", "processes": 4})
    assert [k for k, _ in distributed_problems(both)] == ["distributed.nproc_per_node"]
    fsdp = _job(tmp_path, {"nproc_per_node": 2, "strategy": "fsdp2"}, backend="nanogpt")
    assert [k for k, _ in distributed_problems(fsdp)] == ["distributed.strategy"]


def test_resume_may_change_processes_when_the_global_batch_stays(tmp_path):
    two = _job(tmp_path, {"nproc_per_node": 2}).model_dump(mode="json")
    one = _job(tmp_path, train={"grad_accum": 2}).model_dump(mode="json")
    assert job_changes(two, one) == []
    smaller = _job(tmp_path).model_dump(mode="json")
    assert sorted(line.split(":")[0] for line in job_changes(two, smaller)) == ["distributed.nproc_per_node"]
    fsdp = _job(tmp_path, {"nproc_per_node": 2, "strategy": "fsdp2"}).model_dump(mode="json")
    assert job_changes(two, fsdp) == []
    old = {k: v for k, v in smaller.items() if k != "distributed"}  # a checkpoint from before the section
    assert job_changes(old, smaller) == []


def _script(tmp_path, **alloc) -> str:
    job = _job(tmp_path, {"nproc_per_node": 2, "nnodes": 2, "rendezvous": {"endpoint": "x:1"}})
    return sbatch_script(job, tmp_path / "job.yaml", ["train.max_steps=50"], Allocation(**alloc), "/venv/python",
                         tmp_path)


def test_slurm_script_runs_one_hub_that_starts_torchrun_on_every_node(tmp_path):
    text = _script(tmp_path, nodes=4, gpus_per_node=8, partition="gpu", time="1-00:00:00", port=29400)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in ("--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--partition=gpu",
                      "--time=1-00:00:00", "--job-name=tiny-pretrain"):
        assert f"#SBATCH {directive}" in lines
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in lines
    command = text.split("head -n 1)\n", 1)[1].replace("\\\n", " ").split()
    assert command[:6] == ["/venv/python", "-m", "trainhub", "train", "--config", str(tmp_path / "job.yaml")]
    sets = [command[i + 1].strip('"') for i, word in enumerate(command) if word == "--set"]
    assert sets == ["train.max_steps=50", "distributed.launcher=srun", "distributed.nnodes=4",
                    "distributed.nproc_per_node=8", "distributed.rendezvous.endpoint=${head}:29400",
                    "distributed.rendezvous.id=slurm-${SLURM_JOB_ID}"]
    assert text.count("trainhub train") == 1  # one hub; srun is in the command it runs (runners/launch.py)


@pytest.mark.parametrize("alloc,message", [
    ({"nodes": 1, "gpus_per_node": 1}, "needs no SLURM script"),
    ({"nodes": 2, "gpus_per_node": 4, "time": "two hours"}, "is not a SLURM time"),
    ({"nodes": 2, "gpus_per_node": 4, "port": 70000}, "is not a TCP port"),
])
def test_slurm_refuses_bad_allocations(tmp_path, alloc, message):
    with pytest.raises(SlurmError, match=message):
        _script(tmp_path, **alloc)


def test_slurm_cpu_nodes_ask_for_cpus_not_gpus(tmp_path):
    text = _script(tmp_path, nodes=2, gpus_per_node=3, cpu=True)
    assert "#SBATCH --cpus-per-task=3" in text.splitlines() and "--gpus-per-node" not in text
    assert '--set distributed.nproc_per_node=3' in text


def test_submit_without_sbatch_says_so(tmp_path, monkeypatch):
    import shutil

    from trainhub.slurm import submit

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SlurmError, match="--submit needs SLURM's sbatch on the PATH; none here"):
        submit(tmp_path / "job.sbatch")


def test_blocks_and_the_loss_module(tmp_path):
    from trainhub.engine.models import build_model
    from trainhub.engine.parallelize import blocks
    from trainhub.engine.setup import make_loss

    class Tok:
        pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

        def __len__(self):
            return 400

    model = build_model(_job(tmp_path), Tok())
    assert len(blocks(model)) == 2
    loss = make_loss(model, "auto", 400)
    assert loss.model is model and {n for n, _ in loss.named_parameters()} == {
        f"model.{n}" for n, _ in model.named_parameters()}


def test_other_ranks_write_only_their_own_error_rows(tmp_path):
    from trainhub.child import RankLog
    from trainhub.metrics import EndRow, ErrorRow, MetricLog

    for rank in (0, 1):
        log = RankLog(MetricLog(tmp_path / "metrics.jsonl"), rank)
        log.write(ErrorRow(run_id="r", step=3, message="boom"))
        log.write(EndRow(run_id="r", step=3, status="failed", wall_s=1.0, tokens=0, final_loss=None))
        log.close()
    got = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["event"], r.get("message")) for r in got] == [("error", "rank 0: boom"), ("end", None),
                                                             ("error", "rank 1: boom")]


@pytest.mark.parametrize("extends,strategy", [("extends: ddp", "ddp"), ("extends: fsdp2", "fsdp2")])
def test_the_presets_run_the_engine_through_torchrun(tmp_path, extends, strategy):
    from tests.conftest import write_job
    from trainhub.jobfile import load

    raw = tiny_pretrain_job(tmp_path)
    config = write_job(tmp_path / "job.yaml", raw)
    config.write_text(f"{extends}\n" + config.read_text())
    job = load(config, ["distributed.nproc_per_node=2"])
    assert job.distributed.resolved == strategy and job.backend.type == "native"
    argv = NativeRunner().prepare(job, tmp_path).argv
    assert argv[3:5] == ["--standalone", "--nproc_per_node=2"]
    if strategy == "fsdp2":
        assert job.distributed.fsdp2.param_dtype == "bfloat16"


def test_plan_and_slurm_on_the_command_line(tmp_path):
    from tests.conftest import run_cli, write_job

    config = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path))
    plan = run_cli("plan", "--config", str(config), "--set", "distributed.nproc_per_node=2")
    assert plan.returncode == 0, plan.stderr
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m trainhub.engine" in plan.stdout
    assert "global batch 8 x 1 x 2 = 16 sequences" in plan.stdout
    out = tmp_path / "job.sbatch"
    slurm = run_cli("slurm", "--config", str(config), "-N", "2", "-G", "4", "-o", str(out))
    assert slurm.returncode == 0, slurm.stderr
    assert "#SBATCH --nodes=2" in out.read_text() and f"sbatch {out}" in slurm.stdout
    refused = run_cli("slurm", "--config", str(config), "-N", "2", "-G", "4", "--set", "backend=trl")
    assert refused.returncode == 1 and "backend trl is not (yet) launched on several nodes" in refused.stderr
