"""Jobs in SQLite (WAL): submitted, claimed under a lease, kept alive by heartbeats, ended.

Lifecycle: ``queued -> running -> succeeded | failed | cancelled``, and ``running ->
queued`` when the worker's service stops before the job's end (``release``). A worker claims a job
atomically (one ``BEGIN IMMEDIATE`` transaction: the oldest job of the highest priority
that is queued, or running under a lease that expired because its worker died) and must
renew the lease before it runs out; a job whose lease lapsed is claimed again, and its
run resumes from its item-level state, so no finished item is done twice. Cancelling a
queued job ends it at once; a running one is asked to stop (its worker sees the flag at
its next heartbeat). Every method opens no thread; one connection per queue object,
shared under a lock, so a queue object may be used from several threads.

A job's items are kept apart from it, a chunk of them per row (``job_items``): looking at
a job (``get``, ``list``, the API's progress events twice a second) reads none of them,
and its worker streams them, so a job of millions of items costs disk, not memory.
"""

from __future__ import annotations

import builtins
import itertools
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from symbatcher.errors import SymbatcherError

JobState = Literal["submitting", "queued", "running", "succeeded", "failed", "cancelled"]
ENDED: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    expression TEXT NOT NULL,
    settings TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    timeout REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker TEXT,
    lease_until REAL,
    claims INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    progress TEXT,
    total INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_turn ON jobs (state, priority DESC, created_at);
CREATE TABLE IF NOT EXISTS job_items (
    job_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    items TEXT NOT NULL,
    PRIMARY KEY (job_id, chunk)
) WITHOUT ROWID;
"""
#: items per row of ``job_items``: a read of one is short, and few rows are written
CHUNK = 1000
#: ``PRAGMA user_version`` of a queue whose items are in ``job_items`` (0: in the settings)
VERSION = 1
#: seconds a job being submitted stays, unless its submitter writes again: a submitter that
#: died leaves a job nobody claims, removed by the next claim once this lapsed
SUBMIT_LEASE = 60.0


class JobNotFoundError(SymbatcherError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class JobStateError(SymbatcherError):
    """The job is not in a state that allows what was asked (retrying a running job)."""


@dataclass(frozen=True)
class Job:
    id: str
    expression: str
    settings: dict[str, Any]
    state: JobState
    priority: int
    timeout: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    lease_until: float | None
    claims: int
    cancel_requested: bool
    error: str | None
    progress: dict[str, Any] | None
    #: how many items the job has (read them with ``JobQueue.items``); None: none given
    total: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            expression=row["expression"],
            settings=json.loads(row["settings"]),
            state=row["state"],
            priority=row["priority"],
            timeout=row["timeout"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            worker=row["worker"],
            lease_until=row["lease_until"],
            claims=row["claims"],
            cancel_requested=bool(row["cancel_requested"]),
            error=row["error"],
            progress=json.loads(row["progress"]) if row["progress"] else None,
            total=row["total"],
        )


class JobQueue:
    """The queue in ``path`` (a SQLite file; created with its folder if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if self._db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
                self._upgrade()
            else:
                self._db.executescript(_SCHEMA)

    def _upgrade(self) -> None:
        """Create the tables, or move the items of a queue made before 0.7.2 out of its
        jobs' settings; once, by whichever process opens it first."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
                if columns and "total" not in columns:
                    self._db.execute("ALTER TABLE jobs ADD COLUMN total INTEGER")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                rows = self._db.execute(
                    "SELECT id, settings FROM jobs WHERE total IS NULL"
                ).fetchall()
                for row in rows:
                    settings = json.loads(row["settings"])
                    if isinstance(settings.get("items"), list):
                        items = settings.pop("items")
                        for number, chunk in enumerate(_chunks(items)):
                            _write_chunk(self._db, row["id"], number, chunk)
                        total = len(items)
                        self._db.execute(
                            "UPDATE jobs SET settings = ?, total = ? WHERE id = ?",
                            (json.dumps(settings), total, row["id"]),
                        )
                self._db.execute(f"PRAGMA user_version = {VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ clients
    def submit(
        self,
        expression: str,
        settings: dict[str, Any] | None = None,
        *,
        items: Iterable[Any] | None = None,
        priority: int = 0,
        timeout: float | None = None,
        now: float | None = None,
    ) -> Job:
        """A new queued job; higher ``priority`` goes first, then older jobs.

        ``items`` (or ``settings["items"]``) may be any iterable, a generator too: it is
        read a chunk at a time, each written in a short transaction of its own, so reading
        a large file holds up no other user of the queue. Until the last chunk is in, the
        job is ``submitting``, which no worker claims; an error while reading (a bad
        record) removes it, and leaves no job behind."""
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        settings = dict(settings or {})
        if "items" in settings:
            if items is not None:
                raise ValueError("give the items once: as items= or in settings['items']")
            items = settings.pop("items")
        if isinstance(items, str | bytes | Mapping):
            raise TypeError(f"a job's items are an iterable of items, not {type(items).__name__}")
        job_id = uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, expression, settings, state, priority, timeout, "
                "created_at, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    expression,
                    json.dumps(settings),
                    "queued" if items is None else "submitting",
                    priority,
                    timeout,
                    time.time() if now is None else now,
                    None if items is None else time.time() + SUBMIT_LEASE,
                ),
            )
        if items is not None:
            try:
                self._put_items(job_id, items)
            except BaseException:
                with self._transaction() as db:
                    _remove(db, job_id)
                raise
        return self.get(job_id)

    def _put_items(self, job_id: str, items: Iterable[Any]) -> int:
        """Write the items a chunk per transaction (read outside the queue's lock), then
        queue the job; how many."""
        total = 0
        for number, chunk in enumerate(_chunks(items)):
            with self._transaction() as db:
                renewed = db.execute(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'submitting'",
                    (time.time() + SUBMIT_LEASE, job_id),
                ).rowcount
                if not renewed:  # a claim took it for abandoned: the items came too slowly
                    raise JobStateError(
                        f"the submission of job {job_id!r} lapsed: more than "
                        f"{SUBMIT_LEASE:g} s passed between two chunks of {CHUNK} items"
                    )
                _write_chunk(db, job_id, number, chunk)
            total += len(chunk)
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'queued', total = ?, lease_until = NULL WHERE id = ?",
                (total, job_id),
            )
        return total

    def items(self, job_id: str, start: int = 0) -> Iterator[Any]:
        """The job's items from ``start`` on, read a chunk at a time (each a short read:
        nothing stays open between them)."""
        chunk, skip = divmod(start, CHUNK)
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT items FROM job_items WHERE job_id = ? AND chunk = ?", (job_id, chunk)
                ).fetchone()
            if row is None:
                return
            yield from json.loads(row[0])[skip:]
            chunk, skip = chunk + 1, 0

    def get(self, job_id: str) -> Job:
        with self._lock:
            return Job.from_row(_row(self._db, job_id))

    def list(self, state: JobState | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        """Newest first: the job just submitted is on the first page, however many ended."""
        query = "SELECT * FROM jobs"
        params: list[Any] = []
        if state is not None:
            query += " WHERE state = ?"
            params.append(state)
        query += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [Job.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: 0 for state in get_args(JobState)} | {r[0]: r[1] for r in rows}

    def cancel(self, job_id: str, now: float | None = None) -> Job:
        """End a queued job now; ask a running one to stop. An ended job stays as it is."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = _row(db, job_id)
            if row["state"] == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?, cancel_requested = 1 "
                    "WHERE id = ?",
                    (now, job_id),
                )
            elif row["state"] == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id)

    def retry(self, job_id: str, settings: Mapping[str, Any] | None = None) -> Job:
        """Queue a failed or cancelled job, or a trial (``limit``), again. Its run resumes
        from its items: those that succeeded are not run again, the failed ones and those
        never reached are. ``settings`` replace those of the job it names (a larger
        ``max_cost`` for a job that reached its budget, ``prices`` for a model that had
        none, a larger ``limit`` or none for a trial)."""
        with self._transaction() as db:
            row = _row(db, job_id)
            had = json.loads(row["settings"])
            trial = had.get("limit") is not None
            if row["state"] not in ("failed", "cancelled") and not (
                trial and row["state"] == "succeeded"
            ):
                raise JobStateError(
                    f"job {job_id!r} is {row['state']}: only a failed or cancelled job, or a "
                    f"trial (settings.limit), is retried"
                )
            settings = had | dict(settings or {}) | {"retry_failed": True}
            db.execute(
                "UPDATE jobs SET state = 'queued', settings = ?, finished_at = NULL, "
                "error = NULL, cancel_requested = 0, worker = NULL, lease_until = NULL "
                "WHERE id = ?",
                (json.dumps(settings), job_id),
            )
        return self.get(job_id)

    def delete(self, job_id: str) -> Job:
        """Remove an ended job and its items from the queue (its run directory is the
        caller's to remove); the job as it was. A job still queued or running is kept."""
        with self._transaction() as db:
            job = Job.from_row(_row(db, job_id))
            if job.state not in ENDED:
                raise JobStateError(
                    f"job {job_id!r} is {job.state}: cancel it first; only an ended job is deleted"
                )
            _remove(db, job_id)
        return job

    def expire(
        self, older_than: float, now: float | None = None, limit: int = 100
    ) -> builtins.list[Job]:
        """Remove up to ``limit`` jobs that ended more than ``older_than`` seconds ago, with
        their items (their run directories are the caller's to remove); the jobs removed,
        oldest first. ``limit`` keeps each write short: call again while it returns some."""
        now = time.time() if now is None else now
        marks = ",".join("?" * len(ENDED))
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) AND finished_at <= ? "
                "ORDER BY finished_at, id LIMIT ?",
                (*ENDED, now - older_than, limit),
            ).fetchall()
            for row in rows:
                _remove(db, row["id"])
        return [Job.from_row(row) for row in rows]

    # ------------------------------------------------------------------ workers
    def claim(
        self, worker: str, lease: float = 30.0, now: float | None = None, models_only: bool = False
    ) -> Job | None:
        """The next job for ``worker``, now running under a lease, or None. ``models_only``:
        only a job that names its model (``settings.model``), for a worker with no engine of
        its own."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            for (stale,) in db.execute(
                "SELECT id FROM jobs WHERE state = 'submitting' AND lease_until < ?",
                (time.time(),),
            ).fetchall():
                _remove(db, stale)  # its submitter died mid-way: nobody will queue it
            row = db.execute(
                "SELECT id FROM jobs WHERE (state = 'queued' "
                "OR (state = 'running' AND lease_until < ?)) "
                + ("AND json_extract(settings, '$.model') IS NOT NULL " if models_only else "")
                + "ORDER BY priority DESC, created_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, "
                "started_at = COALESCE(started_at, ?), claims = claims + 1 WHERE id = ?",
                (worker, now + lease, now, row["id"]),
            )
        return self.get(row["id"])

    def heartbeat(
        self,
        job_id: str,
        worker: str,
        lease: float = 30.0,
        progress: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Job | None:
        """Renew the lease (and store progress). None: the job is no longer this worker's
        (its lease lapsed and another took it): stop working on it."""
        now = time.time() if now is None else now
        figures = json.dumps(progress) if progress is not None else None
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET lease_until = ?, progress = COALESCE(?, progress) "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (now + lease, figures, job_id, worker),
            ).rowcount
        return self.get(job_id) if changed else None

    def release(
        self,
        job_id: str,
        worker: str,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """Put a running job back in the queue (its service stops): claimed again at once,
        by any worker, it resumes from its items. False if it was not this worker's."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, "
                "progress = COALESCE(?, progress) "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (json.dumps(progress) if progress is not None else None, job_id, worker),
            ).rowcount
        return bool(changed)

    def finish(
        self,
        job_id: str,
        worker: str,
        state: JobState,
        error: str | None = None,
        progress: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> bool:
        """End the job; False if it was not this worker's any more (nothing changed)."""
        if state not in ENDED:
            raise ValueError(f"a job ends as one of {ENDED}, not {state!r}")
        now = time.time() if now is None else now
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ?, lease_until = NULL, "
                "progress = COALESCE(?, progress) "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (
                    state,
                    now,
                    error,
                    json.dumps(progress) if progress is not None else None,
                    job_id,
                    worker,
                ),
            ).rowcount
        return bool(changed)


def _row(db: sqlite3.Connection, job_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFoundError(f"no job {job_id!r}")
    return row


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, CHUNK)):
        yield chunk


def _write_chunk(db: sqlite3.Connection, job_id: str, number: int, chunk: list[Any]) -> None:
    db.execute(
        "INSERT INTO job_items (job_id, chunk, items) VALUES (?, ?, ?)",
        (job_id, number, json.dumps(chunk)),
    )


def _remove(db: sqlite3.Connection, job_id: str) -> None:
    db.execute("DELETE FROM job_items WHERE job_id = ?", (job_id,))
    db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
