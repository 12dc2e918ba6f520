"""`trainhub server`: the API with FastAPI's TestClient, and the real server process on localhost.

The quick tests use a server with no slot (nothing launches): submission checks, the token, the
allowed roots, stop/resume/delete bookkeeping, the page. The slow ones run real tiny CPU jobs through
`train`: two jobs on one slot, a streamed, stopped and resumed run, and a server killed mid-run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import DATA, ROOT, rows, tiny_pretrain_job

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from trainhub.server.admit import Policy  # noqa: E402
from trainhub.server.app import create_app  # noqa: E402
from trainhub.server.main import ServerError, build  # noqa: E402
from trainhub.server.queue import Queue  # noqa: E402
from trainhub.server.store import Store  # noqa: E402


def _job(tmp: Path, name: str, steps: int, **over) -> dict:
    """The tiny pretraining job with everything it names under tmp (the server's allowed root)."""
    if not (tmp / "eval.jsonl").exists():
        shutil.copy(DATA / "stories_eval.jsonl", tmp / "eval.jsonl")
    job = tiny_pretrain_job(tmp, name=name, output_dir=str(tmp / "runs" / name),
                            data={"eval": str(tmp / "eval.jsonl"), "max_length": 16},
                            train={"max_steps": steps, "micro_batch_size": 2, "save_every": 10_000})
    return {**job, **over}


def _idle_app(tmp: Path, token: str | None = None, allow_code: bool = False):
    """A server with no slot: jobs are admitted and queued, never launched."""
    queue = Queue(Store(tmp / "home" / "jobs.sqlite"), tmp / "home" / "jobs", [], tmp)
    return create_app(queue, Policy([tmp.resolve()], allow_code), token)


def _wait(client, job_id: int, statuses: tuple[str, ...], timeout: float = 300, headers=None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


# ----------------------------------------------------------------------------- quick: no training


def test_bad_job_is_422_with_validate_lines(tmp_path):
    job = _job(tmp_path, "bad", 3)
    job["train"]["max_stepz"] = 4
    with TestClient(_idle_app(tmp_path)) as client:
        r = client.post("/jobs?filename=mine.yaml", content=yaml.safe_dump(job, sort_keys=False))
        assert r.status_code == 422
        (line,) = r.json()["detail"]
        assert line.startswith("mine.yaml:") and "unknown key 'train.max_stepz'; did you mean 'train.max_steps'?" in line
        # the same line `trainhub validate` prints for the same file
        (tmp_path / "mine.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "trainhub", "validate", "-c", "mine.yaml"], cwd=tmp_path,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "backend")})
        assert done.returncode == 1 and f"error {line}" in done.stderr
        assert client.get("/jobs").json()["jobs"] == []


def test_paths_outside_the_allowed_roots_are_refused(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    with TestClient(_idle_app(root)) as client:
        job = _job(root, "a", 3)
        job["data"]["eval"] = str(DATA / "stories_eval.jsonl")  # a real file, elsewhere on the machine
        r = client.post("/jobs", content=json.dumps(job))
        assert r.status_code == 422
        assert any(line.startswith("data.eval[0].path:") and "outside the folders" in line for line in r.json()["detail"])
        r = client.post("/jobs", content=json.dumps(_job(root, "b", 3, output_dir=str(outside / "run"))))
        assert r.status_code == 422 and r.json()["detail"][0].startswith("output_dir:")
        link = root / "sneaky"
        link.symlink_to(outside)  # a symlink under the root that leads out is followed, and refused
        r = client.post("/jobs", content=json.dumps(_job(root, "c", 3, output_dir=str(link / "run"))))
        assert r.status_code == 422 and "outside the folders" in r.json()["detail"][0]
        (outside / "base.yaml").write_text("seed: 1\n")
        r = client.post("/jobs", content=yaml.safe_dump({"extends": str(outside / "base.yaml"), **_job(root, "d", 3)}))
        assert r.status_code == 422 and "extends" in r.json()["detail"][0]
        r = client.post("/jobs", content=yaml.safe_dump({"extends": "../../../" + str(outside / "base"), **_job(root, "e", 3)}))
        assert r.status_code == 422 and "a preset is named without a path" in r.json()["detail"][0]
        assert client.get("/jobs").json()["jobs"] == []
        r = client.post("/jobs", content=json.dumps(_job(root, "ok", 3)))
        assert r.status_code == 201, r.text


def test_reward_code_needs_allow_code(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(8)))
    (tmp_path / "mine.py").write_text("def reward(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    job = _job(tmp_path, "rl", 2)
    job.update(backend="trl", method={"type": "grpo", "group_size": 2, "max_new_tokens": 4,
                       "rewards": [{"function": str(tmp_path / "mine.py") + ":reward"}]},
               data={"train": str(prompts), "format": "prompt", "max_length": 16, "overlong": "drop"})
    job["train"] = {**job["train"], "micro_batch_size": 2}
    job["model"]["init"]["tokenizer"] = {"type": "train", "vocab_size": 300}
    with TestClient(_idle_app(tmp_path)) as client:
        r = client.post("/jobs", content=json.dumps(job))
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == [f"method.rewards[0].function: {tmp_path}/mine.py:reward runs code the submitter "
                                      f"chose; this server runs such jobs only when started with --allow-code (the "
                                      f"built-in trainhub.rewards:* rewards need no flag)"]
    with TestClient(_idle_app(tmp_path, allow_code=True)) as client:
        r = client.post("/jobs", content=json.dumps(job))
        assert r.status_code == 201, r.text


def test_token_is_required_and_compared(tmp_path):
    with TestClient(_idle_app(tmp_path, token="s3cret")) as client:
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/jobs", content="name: x\n").status_code == 401  # before anything is read
        assert client.get("/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = client.get("/")  # the page holds no job data; it asks for the token
        assert page.status_code == 200 and 'id="token"' in page.text


def test_beyond_loopback_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINHUB_SERVER_TOKEN", raising=False)
    with pytest.raises(ServerError, match="TRAINHUB_SERVER_TOKEN"):
        build("0.0.0.0", None, [tmp_path], False, folder=tmp_path / "home")
    build("127.0.0.1", None, [tmp_path], False, folder=tmp_path / "home")
    monkeypatch.setenv("TRAINHUB_SERVER_TOKEN", "t")
    build("0.0.0.0", "0,1", [tmp_path], False, folder=tmp_path / "home")
    with pytest.raises(ServerError, match="--gpus"):
        build("127.0.0.1", "0,x", [tmp_path], False, folder=tmp_path / "home")
    cli = subprocess.run([sys.executable, "-m", "trainhub", "server", "--host", "0.0.0.0", "--allow", str(tmp_path)],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "TRAINHUB_SERVER_TOKEN"})
    assert cli.returncode == 1 and "TRAINHUB_SERVER_TOKEN" in cli.stderr


def test_queue_bookkeeping_stop_resume_delete(tmp_path):
    with TestClient(_idle_app(tmp_path)) as client:
        first = client.post("/jobs", content=json.dumps(_job(tmp_path, "one", 3))).json()
        assert first["status"] == "queued" and first["run"] is None
        again = client.post("/jobs", content=json.dumps(_job(tmp_path, "one", 3)))
        assert again.status_code == 422 and f"run folder of job {first['id']}" in again.json()["detail"][0]
        assert client.delete(f"/jobs/{first['id']}").status_code == 409  # queued: not finished
        assert client.post(f"/jobs/{first['id']}/resume").status_code == 409
        stopped = client.post(f"/jobs/{first['id']}/stop").json()
        assert stopped["status"] == "interrupted" and stopped["message"] == "stopped before it started"
        assert client.post(f"/jobs/{first['id']}/resume").json()["status"] == "queued"
        client.post(f"/jobs/{first['id']}/stop")
        (tmp_path / "runs" / "one").mkdir(parents=True)
        assert client.delete(f"/jobs/{first['id']}").json()["deleted"] == first["id"]
        assert (tmp_path / "runs" / "one").is_dir()  # kept unless asked
        assert client.get(f"/jobs/{first['id']}").status_code == 404
        assert client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/stop"]


def test_recovery_settles_runs_that_ended_while_no_server_ran(tmp_path):
    """A job the table says is running whose process is gone: its end row decides; none means interrupted."""
    store = Store(tmp_path / "jobs.sqlite")
    ended, vanished = store.add("a", "native", str(tmp_path / "a")), store.add("b", "native", str(tmp_path / "b"))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.jsonl").write_text(json.dumps({"event": "end", "status": "completed", "exit_code": 0}) + "\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    for job in (ended, vanished):
        store.update(job.id, status="running", pid=dead.pid, slot="cpu")
    Queue(store, tmp_path / "jobs", ["cpu"], tmp_path).recover()
    assert store.get(ended.id).status == "completed" and store.get(ended.id).exit_code == 0
    assert store.get(vanished.id).status == "interrupted"


def test_page_is_self_contained(tmp_path):
    with TestClient(_idle_app(tmp_path)) as client:
        html = client.get("/").text
    assert "<script src" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "/metrics?follow=1" in html


def test_nothing_but_the_cli_imports_the_server():
    package = ROOT / "backend" / "trainhub"
    importers = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "trainhub.server" in p.read_text() and p.parent.name != "server" and p.name != "cli.py"]
    assert importers == []


def test_a_job_on_several_gpus_is_refused(tmp_path):
    from trainhub.job import Job
    from trainhub.server.admit import slot_problems

    job = Job.model_validate(_job(tmp_path, "multi", 3, backend={"type": "nanogpt", "processes": 2}))
    assert [str(p) for p in slot_problems(job)] == [
        "backend.processes: 2: the server runs each job on one GPU slot; a job on several GPUs is not supported "
        "by the server yet (run it with train)"]
    assert slot_problems(Job.model_validate(_job(tmp_path, "one", 3))) == []


# ----------------------------------------------------------------------------- slow: real runs


@pytest.mark.slow
def test_two_jobs_one_slot_stream_stop_resume(tmp_path):
    """One CPU slot: the second job waits; the first, streamed, is stopped (checkpoint, interrupted) and
    resumed to completion after the second ran."""
    app, _queue = build("127.0.0.1", None, [tmp_path], False, folder=tmp_path / "home", cwd=tmp_path)
    with TestClient(app) as client:
        first = client.post("/jobs", content=json.dumps(_job(tmp_path, "long", 150))).json()
        second = client.post("/jobs", content=yaml.safe_dump(_job(tmp_path, "short", 3))).json()
        assert second["status"] == "queued"
        steps = []
        with client.stream("GET", f"/jobs/{first['id']}/metrics?follow=1") as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "row":
                    row = json.loads(line.removeprefix("data: "))
                    if row["event"] == "train":
                        steps.append(row["step"])
                        if len(steps) == 1:
                            assert client.get(f"/jobs/{second['id']}").json()["status"] == "queued"
                            assert client.post(f"/jobs/{first['id']}/stop").status_code == 202
                elif event == "done":
                    assert json.loads(line.removeprefix("data: "))["status"] in ("interrupted", "stopping")
                    break
        stopped = _wait(client, first["id"], ("interrupted", "failed", "completed"))
        assert stopped["status"] == "interrupted", client.get(f"/jobs/{first['id']}/log").text
        run = tmp_path / "runs" / "long"
        end = rows(run, "end")[-1]
        assert end["status"] == "interrupted" and end["step"] < 150
        assert any((run / "checkpoints").iterdir())
        assert steps and steps[0] >= 1 and steps == sorted(steps)

        done = _wait(client, second["id"], ("completed", "failed", "interrupted"))
        assert done["status"] == "completed" and done["run"]["steps"] == "3/3"
        assert client.post(f"/jobs/{first['id']}/resume").json()["status"] in ("queued", "running")
        resumed = _wait(client, first["id"], ("completed", "failed", "interrupted"), timeout=600)
        assert resumed["status"] == "completed", client.get(f"/jobs/{first['id']}/log").text
        starts = rows(run, "start")
        assert len(starts) == 2 and starts[1]["resumed_from"].endswith(f"step-{end['step']:08d}")
        assert rows(run, "end")[-1]["step"] == 150 and resumed["launches"] == 2
        plots = client.get(f"/jobs/{first['id']}/plots").json()
        assert plots[0]["id"] == "loss_step" and plots[0]["series"][0]["x"][-1] == 150
        assert client.delete(f"/jobs/{first['id']}?remove_run=1").status_code == 200
        assert not run.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(tmp: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TRAINHUB_HOME": str(tmp / "home"), "TRAINHUB_SERVER_TOKEN": "tok",
           "PYTHONPATH": str(ROOT / "backend")}
    server = subprocess.Popen([sys.executable, "-m", "trainhub", "server", "--port", str(port), "--allow", str(tmp)],
                              cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.3)
    raise AssertionError("the server did not start")


@pytest.mark.slow
def test_server_killed_mid_run_loses_no_job(tmp_path):
    """The real `trainhub server` on localhost, SIGKILLed while one job runs and one waits: started again on
    the same home it follows the running job (not restarted) and runs the queued one."""
    import httpx

    port = _free_port()
    auth = {"Authorization": "Bearer tok"}
    server = _start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as client:
            assert client.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
            first = client.post("/jobs", content=json.dumps(_job(tmp_path, "long", 60))).json()
            second = client.post("/jobs", content=json.dumps(_job(tmp_path, "short", 3))).json()
            deadline = time.time() + 300
            while not ((tmp_path / "runs" / "long" / "metrics.jsonl").exists() and rows(tmp_path / "runs" / "long", "train")):
                assert time.time() < deadline, client.get(f"/jobs/{first['id']}/log").text
                time.sleep(0.3)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            server = _start_server(tmp_path, port)
            jobs = {j["id"]: j for j in client.get("/jobs").json()["jobs"]}
            assert jobs[second["id"]]["status"] in ("queued", "running")
            assert jobs[first["id"]]["status"] in ("running", "completed")
            for job_id in (first["id"], second["id"]):
                job = _wait(client, job_id, ("completed", "failed", "interrupted"), headers=auth)
                assert job["status"] == "completed", client.get(f"/jobs/{job_id}/log").text
        assert len(rows(tmp_path / "runs" / "long", "start")) == 1  # followed again, never restarted
        assert rows(tmp_path / "runs" / "long", "end")[-1]["step"] == 60
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

