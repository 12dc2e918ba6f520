"""`trainhub slurm --submit` against a real SLURM: the test starts a single-node cluster of its own (Debian's
slurm-wlm: munged, slurmctld and slurmd as root, every file under the test's folder), submits a 2-process DDP
job through the command a user runs, and reads the run's metric log when SLURM says the job is done: the one
hub ran srun + torchrun inside the allocation, the ranks met at the rendezvous the script names, and the run
ends completed with the one-process curve's losses.

Skipped where that cluster cannot start: not root, or slurm-wlm not installed (`apt-get install slurm-wlm`
puts it on a Debian machine; CI does not have it). The unit tests in tests/unit/test_distributed.py read the
script's text everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job

pytestmark = pytest.mark.slow  # a cluster's start, then a 2-process run (~1 min on 2 cores)

DAEMONS = ("munged", "slurmctld", "slurmd")


def _cluster_or_skip(root: Path) -> dict:
    """Start munged, slurmctld and slurmd for one node (this host, its CPUs) under `root`; returns the env
    that points SLURM's commands at it."""
    sbin = Path("/usr/sbin")
    if os.geteuid() != 0 or not all((sbin / d).exists() for d in DAEMONS) or shutil.which("sbatch") is None:
        pytest.skip("a single-node SLURM needs root and Debian's slurm-wlm (munged, slurmctld, slurmd, sbatch)")
    if not Path("/etc/munge/munge.key").exists():
        pytest.skip("munge has no key (/etc/munge/munge.key): slurm-wlm's install makes one")
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    for d in ("state", "spool", "log", "munge"):
        (root / d).mkdir(parents=True)
    shutil.chown(root / "munge", "munge")
    socket = root / "munge" / "munge.socket"
    port = 16817 + os.getpid() % 1000  # a port of this test's own, away from a real cluster's 6817
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=trainhub-test", f"SlurmctldHost={host}", "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={socket}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={port}", f"SlurmdPort={port + 1}",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldLogFile={root}/log/ctld.log", f"SlurmdLogFile={root}/log/d.log", "ReturnToService=2",
        "MpiDefault=none", "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    subprocess.run(["runuser", "-u", "munge", "--", str(sbin / "munged"), f"--socket={socket}",
                    f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
                    f"--seed-file={root}/munge/seed"], check=True)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([str(sbin / daemon), "-f", str(conf)], check=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout
        if "idle" in state:
            return env
        time.sleep(1)
    pytest.fail(f"the test's SLURM did not come up: sinfo says {state!r}; logs in {root}/log")


@pytest.fixture
def cluster():
    # a folder of its own under /tmp, readable by the munge user (pytest's tmp_path sits under a 0700 folder)
    base = Path(tempfile.mkdtemp(prefix="trainhub-slurm-"))
    base.chmod(0o755)
    root = base / "cluster"
    try:
        yield _cluster_or_skip(root)
    finally:
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", root / "munge" / "munged.pid"):
            if pid_file.exists():
                subprocess.run(["kill", pid_file.read_text().strip()], check=False)
        time.sleep(1)
        shutil.rmtree(base, ignore_errors=True)


def test_submitted_job_trains_on_two_processes_under_slurm(tmp_path, cluster):
    job = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "slurm-run"),
                            train={"micro_batch_size": 4, "max_steps": 4})
    job["distributed"] = {"strategy": "ddp"}
    config = write_job(tmp_path / "job.yaml", job)
    script = tmp_path / "job.sbatch"
    submitted = subprocess.run(
        [sys.executable, "-m", "trainhub", "slurm", "--config", str(config), "-N", "1", "-G", "2", "--cpu",
         "--port", str(29600 + os.getpid() % 1000), "--submit", "-o", str(script)],
        capture_output=True, text=True, cwd=tmp_path, env=cluster, timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = submitted.stdout.split()[-1]
    assert "Submitted batch job" in submitted.stdout and job_id.isdigit(), submitted.stdout
    assert "#SBATCH --cpus-per-task=2" in script.read_text() and "--gpus-per-node" not in script.read_text()

    deadline = time.time() + 480
    while time.time() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, env=cluster)
        if not queued.stdout.strip():
            break
        time.sleep(2)
    else:
        pytest.fail(f"job {job_id} still queued or running after 8 minutes")
    log = next(tmp_path.glob(f"slurm-*-{job_id}.out")).read_text()
    end = rows(tmp_path / "slurm-run", "end")
    assert end and end[-1]["status"] == "completed", log[-3000:]
    start = rows(tmp_path / "slurm-run", "start")[0]
    dist = start["job"]["distributed"]
    assert (dist["launcher"], dist["nproc_per_node"], dist["nnodes"]) == ("srun", 2, 1), dist
    assert dist["rendezvous"]["id"] == f"slurm-{job_id}"

    # the same job on this machine, one process, same global batch: the curve SLURM's run must have trained
    alone = {**job, "output_dir": str(tmp_path / "alone"), "distributed": {"strategy": "auto"},
             "train": {**job["train"], "micro_batch_size": 4, "grad_accum": 2}}
    done = run_cli("train", "--config", str(write_job(tmp_path / "alone.yaml", alone)))
    assert done.returncode == 0, done.stderr[-2000:]
    want = [r["loss"] for r in rows(tmp_path / "alone", "train")]
    got = [r["loss"] for r in rows(tmp_path / "slurm-run", "train")]
    assert got == pytest.approx(want, abs=1e-5)
