"""The HTTP API of `trainhub server` (FastAPI; OpenAPI at /openapi.json, browsable at /docs).

    POST   /jobs                  a job file (YAML or JSON body) -> 201 the queued job; 422 with the lines
                                  `trainhub validate` prints (and the server's own refusals)
    GET    /jobs                  every job, with its run's table row (`trainhub runs`' columns)
    GET    /jobs/{id}             one job
    GET    /jobs/{id}/metrics     its metric rows; ?follow=1: server-sent events, one row per event, until
                                  the job ends (`id:` is the byte offset: Last-Event-ID continues there)
    GET    /jobs/{id}/plots       the report's plots of its run (trainhub.report.plots), as data
    GET    /jobs/{id}/log         the tail of train's output (?lines=N)
    POST   /jobs/{id}/stop        Ctrl-C: the run saves a checkpoint, then ends interrupted
    POST   /jobs/{id}/resume      queue an interrupted (or failed) job again, from its latest checkpoint
    DELETE /jobs/{id}             forget a finished job; ?remove_run=1 deletes its run folder too
    GET    /                      the dashboard (one page, no build step, nothing fetched from elsewhere)

With a token (TRAINHUB_SERVER_TOKEN) every /jobs request must carry `Authorization: Bearer <token>`,
compared in constant time, or gets 401. The page and the API description carry no job data and are
served to anyone who can reach the port.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import shutil
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from trainhub.jobfile import JobError
from trainhub.report import NotARun, load, summarize
from trainhub.report import plots as plots_mod
from trainhub.report.runlog import TABLE, table_row
from trainhub.server.admit import Policy, admit, parse_json_or_yaml, run_folder_problem
from trainhub.server.queue import Queue
from trainhub.server.store import ACTIVE, FINISHED, JobRecord

PAGE = Path(__file__).with_name("page.html")
FOLLOW_POLL_S = 0.5


def create_app(queue: Queue, policy: Policy, token: str | None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        queue.start()
        try:
            yield
        finally:
            queue.close()

    app = FastAPI(title="trainhub server", lifespan=lifespan,
                  description="Submit, queue, watch, stop and resume trainhub jobs (docs/server.md).")
    store = queue.store

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if token is not None and request.url.path.startswith("/jobs"):
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong token: send Authorization: Bearer <token> "
                                               "(TRAINHUB_SERVER_TOKEN)"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    def _job(job_id: int) -> JobRecord:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    summaries: dict[str, tuple[tuple[int, int], dict]] = {}  # run folder -> (log mtime, size), its summary

    def _shown(job: JobRecord) -> dict:
        """The job, with its run's row of `trainhub runs` (read again only when its log changed: the page
        asks for every job every 2 s)."""
        out = job.public()
        log = Path(job.run_dir) / "metrics.jsonl"
        try:
            st = log.stat()
            key = (st.st_mtime_ns, st.st_size)
            if summaries.get(job.run_dir, (None,))[0] != key:
                summary = summarize(load(Path(job.run_dir)))
                summaries[job.run_dir] = key, {"run": dict(zip(TABLE, table_row(summary), strict=True)),
                                               "summary": asdict(summary)}
        except (OSError, NotARun):
            return {**out, "run": None}
        return {**out, **summaries[job.run_dir][1]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/jobs", status_code=201, summary="Submit a job (YAML or JSON body)")
    async def submit(request: Request, filename: str = Query("job.yaml", description="Shown in error lines."),
                     sets: list[str] = Query([], alias="set",
                                             description="Override a key, as train --set: train.max_steps=10."),
                     backend: str | None = Query(None, description="Run with this backend instead of the job's.")):
        try:
            text = parse_json_or_yaml(await request.body())
        except UnicodeDecodeError:
            raise HTTPException(422, ["the job must be UTF-8 text (YAML or JSON)"]) from None
        try:
            admitted = await asyncio.to_thread(admit, text, filename, policy, sets, backend)
        except JobError as err:
            return JSONResponse({"detail": [str(p) for p in err.problems]}, status_code=422)
        problem = run_folder_problem(admitted.job)
        if problem:
            return JSONResponse({"detail": [str(problem)]}, status_code=422)
        record = await asyncio.to_thread(queue.submit, admitted.job, admitted.backend, text)
        if isinstance(record, str):
            return JSONResponse({"detail": [record]}, status_code=422)
        return {**_shown(store.get(record.id)), "notes": admitted.notes}

    @app.get("/jobs", summary="Every job, oldest first")
    def jobs():
        return {"columns": list(TABLE), "jobs": [_shown(j) for j in store.all()]}

    @app.get("/jobs/{job_id}", summary="One job")
    def job(job_id: int):
        return _shown(_job(job_id))

    @app.get("/jobs/{job_id}/metrics", summary="Its metric rows; ?follow=1 streams them (server-sent events)")
    async def metrics(request: Request, job_id: int, follow: bool = False):
        job = _job(job_id)
        path = Path(job.run_dir) / "metrics.jsonl"
        if not follow:
            data = path.read_bytes() if path.exists() else b""
            return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines() if line.strip()]
        start = int(request.headers.get("last-event-id") or 0)
        return StreamingResponse(_follow(job_id, path, start), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _follow(job_id: int, path: Path, offset: int):
        while True:
            job = store.get(job_id)  # read before the file: rows written before the job ended are all sent
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                whole = chunk[:chunk.rfind(b"\n") + 1]
                for line in whole.splitlines(keepends=True):
                    offset += len(line)
                    if line.strip():
                        yield f"id: {offset}\nevent: row\ndata: {line.decode().strip()}\n\n"
            if job is None or job.status not in ACTIVE:
                yield f"event: done\ndata: {json.dumps({'status': job.status if job else 'deleted'})}\n\n"
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    @app.get("/jobs/{job_id}/plots", summary="The report's plots of its run, as data")
    def plots(job_id: int):
        job = _job(job_id)
        try:
            run = load(Path(job.run_dir))
        except NotARun:
            return []
        return [asdict(p) for p in plots_mod.build([run])]

    @app.get("/jobs/{job_id}/log", response_class=PlainTextResponse, summary="The tail of train's output")
    def log(job_id: int, lines: int = Query(100, ge=1, le=10_000)):
        _job(job_id)
        path = queue.hub_log(job_id)
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) + "\n"

    @app.post("/jobs/{job_id}/stop", status_code=202, summary="Ctrl-C: checkpoint, then stop")
    def stop(job_id: int):
        _job(job_id)
        why = queue.stop(job_id)
        if why:
            raise HTTPException(409, why)
        return _shown(_job(job_id))

    @app.post("/jobs/{job_id}/resume", status_code=202, summary="Queue it again, from its latest checkpoint")
    def resume(job_id: int):
        _job(job_id)
        why = queue.resume(job_id)
        if why:
            raise HTTPException(409, why)
        return _shown(_job(job_id))

    @app.delete("/jobs/{job_id}", summary="Forget a finished job (?remove_run=1: delete its run folder too)")
    def delete(job_id: int, remove_run: bool = False):
        job = _job(job_id)
        if job.status not in FINISHED:
            raise HTTPException(409, f"job {job_id} is {job.status}; stop it first (only a finished job is deleted)")
        if remove_run and Path(job.run_dir).exists():
            if not any(Path(job.run_dir).resolve().is_relative_to(r) for r in policy.roots):
                raise HTTPException(409, f"{job.run_dir} is no longer under the allowed roots; not removed")
            shutil.rmtree(job.run_dir)
        queue.forget(job_id)
        return {"deleted": job_id, "run_dir": job.run_dir, "run_removed": remove_run}

    return app
