"""The server's job table: one SQLite file in trainhub's home (`<home>/server/jobs.sqlite`).

A job's life, as `status` records it:

    queued -> running -> completed | failed | interrupted
                 \\-> stopping (a stop was asked: the run saves, then ends interrupted)
    interrupted | failed -> queued again by a resume (`resume` set: the next launch continues
                            from the run folder's latest checkpoint)

Every change is committed before the server acts on it, so a server killed at any moment leaves a table
that says what was queued and which process (pid) ran what; the queue reads it back on start
(trainhub.server.queue). One connection per call: the web handlers and the queue's thread each open
their own, and SQLite's own lock serialises the writes (WAL lets the readers go on meanwhile).
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

ACTIVE = ("queued", "running", "stopping")
FINISHED = ("completed", "failed", "interrupted")
RESUMABLE = ("interrupted", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    slot TEXT,
    pid INTEGER,
    resume INTEGER NOT NULL DEFAULT 0,
    log_offset INTEGER NOT NULL DEFAULT 0,
    launches INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    message TEXT
)
"""


@dataclass
class JobRecord:
    id: int
    name: str
    status: str
    backend: str
    run_dir: str
    submitted: float
    started: float | None
    finished: float | None
    slot: str | None
    pid: int | None
    resume: int
    log_offset: int
    launches: int
    exit_code: int | None
    message: str | None

    def public(self) -> dict:
        """What the API shows (the launch bookkeeping left out)."""
        out = asdict(self)
        for key in ("resume", "log_offset"):
            out.pop(key)
        return out


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def add(self, name: str, backend: str, run_dir: str) -> JobRecord:
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO jobs (name, status, backend, run_dir, submitted) VALUES (?, 'queued', ?, ?, ?)",
                             (name, backend, run_dir, time.time()))
            job_id = cur.lastrowid
        return self.get(job_id)

    def get(self, job_id: int) -> JobRecord | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord(**dict(row)) if row else None

    def all(self, statuses: tuple[str, ...] | None = None) -> list[JobRecord]:
        with closing(self._connect()) as db:
            if statuses:
                marks = ",".join("?" * len(statuses))
                rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses).fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        return [JobRecord(**dict(r)) for r in rows]

    def update(self, job_id: int, when: tuple[str, ...] | None = None, **fields) -> bool:
        """Set `fields`; with `when`, only if the job's status is one of those (so a stop and the queue's
        own update cannot overwrite each other). True if the row changed."""
        names = ", ".join(f"{k} = ?" for k in fields)
        sql, args = f"UPDATE jobs SET {names} WHERE id = ?", [*fields.values(), job_id]
        if when:
            sql += f" AND status IN ({','.join('?' * len(when))})"
            args += list(when)
        with closing(self._connect()) as db, db:
            return db.execute(sql, args).rowcount == 1

    def delete(self, job_id: int) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
