"""Building and serving the job server: its home folder, slots, policy and token, then uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from trainhub.home import home
from trainhub.server.admit import Policy
from trainhub.server.queue import Queue
from trainhub.server.store import Store

TOKEN_ENV = "TRAINHUB_SERVER_TOKEN"


class ServerError(Exception):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def slots(gpus: str | None) -> list[str]:
    """`--gpus 0,1`: a slot per GPU index; none given: one CPU slot."""
    if not gpus:
        return ["cpu"]
    out = [g.strip() for g in gpus.split(",") if g.strip()]
    bad = [g for g in out if not g.isdigit()]
    if bad or not out:
        raise ServerError(f"--gpus {gpus}: expected GPU indices separated by commas, e.g. --gpus 0,1")
    if len(set(out)) < len(out):
        raise ServerError(f"--gpus {gpus} names a GPU twice")
    return out


def build(host: str, gpus: str | None, allow: list[Path], allow_code: bool, folder: Path | None = None,
          cwd: Path | None = None):
    """The FastAPI app and its queue; raises ServerError for a configuration that must not start."""
    from trainhub.server.app import create_app

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and token is None:
        raise ServerError(f"--host {host} reaches beyond this machine: set {TOKEN_ENV} (clients send "
                          f"Authorization: Bearer <token>), or bind to 127.0.0.1")
    cwd = (cwd or Path.cwd()).resolve()
    roots = [Path(p).expanduser().resolve() for p in allow] or [cwd]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise ServerError(f"--allow: no such folder: {', '.join(missing)}")
    folder = folder or home() / "server"
    store = Store(folder / "jobs.sqlite")
    queue = Queue(store, folder / "jobs", slots(gpus), cwd)
    return create_app(queue, Policy(roots, allow_code), token), queue


def serve(host: str, port: int, gpus: str | None, allow: list[Path], allow_code: bool, say=print) -> None:
    import uvicorn

    app, queue = build(host, gpus, allow, allow_code)
    policy = ", ".join(str(r) for r in (allow or [Path.cwd()]))
    say(f"trainhub server: http://{host}:{port}/ (API docs /docs), jobs in {queue.jobs_dir}, slots "
        f"{', '.join(queue.slots)}; job paths under {policy}; submitted code "
        f"{'allowed' if allow_code else 'refused'}; token {'required' if os.environ.get(TOKEN_ENV) else 'off'}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
