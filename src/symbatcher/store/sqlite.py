"""The default run store: one SQLite file (WAL) in the run directory, group-committed.

Workers never touch the database. They hand writes to one writer thread, which takes
everything queued, applies it in one transaction and commits once. A finished item's
record comes with a future that completes with the commit holding it; the run hands the
outcome to the caller only then (so an outcome the caller sees is on disk), while the
worker goes on with its next item. The writer gathers writes for up to
``commit_interval`` (20 ms) before it commits, unless someone waits, so that items
finishing apart still share one commit: a commit costs far more than a row, and that
sharing is what keeps per-item durability cheap. With
``synchronous="FULL"`` (default) each commit is fsync'ed and survives a power cut; with
``"NORMAL"`` it survives a killed process but may lose the last commits on power loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from symbatcher.errors import StoreError
from symbatcher.store.base import (
    FAILED,
    FINISHED,
    RUNNING,
    SUCCEEDED,
    ItemRecord,
    ModelUsage,
    RunStore,
    StoreTotals,
)
from symbatcher.store.lock import RunLock

logger = logging.getLogger("symbatcher")

STATE_FILE = "state.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    result TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    job INTEGER,
    started_at REAL,
    completed_at REAL
);
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY,
    calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL
);
"""

# Statements come in variants that write NULL themselves rather than bind None: the
# sqlite3 module sends every bound None through its adapter lookup, which raises and
# formats an AttributeError inside, a few microseconds per None (several per item).
_START = """
INSERT INTO items (idx, fingerprint, status, input, job, started_at)
VALUES (?, ?, 'running', ?, {job}, ?)
ON CONFLICT (idx) DO UPDATE SET
    fingerprint = excluded.fingerprint, status = 'running', input = excluded.input,
    job = excluded.job, started_at = excluded.started_at, result = NULL,
    error_type = NULL, error_message = NULL, error_traceback = NULL, completed_at = NULL
"""
_START_IN_JOB, _START_NO_JOB = _START.format(job="?"), _START.format(job="NULL")
_CALL = """
UPDATE items SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,
    cost = cost + ? WHERE idx = ?
"""
_MODEL = """
INSERT INTO models (model, calls, prompt_tokens, completion_tokens, cost) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (model) DO UPDATE SET calls = calls + excluded.calls,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost
"""
_FINISH = """
UPDATE items SET status = ?, result = ?, {errors}, attempts = attempts + ?,
    completed_at = ?, prompt_tokens = prompt_tokens + ?,
    completion_tokens = completion_tokens + ?, cost = cost + ? WHERE idx = ?
"""
_FINISH_ERROR = _FINISH.format(errors="error_type = ?, error_message = ?, error_traceback = ?")
_FINISH_NO_ERROR = _FINISH.format(
    errors="error_type = NULL, error_message = NULL, error_traceback = NULL"
)
_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_COLUMNS = (
    "idx, fingerprint, status, input, result, error_type, error_message, error_traceback, "
    "attempts, prompt_tokens, completion_tokens, cost, job, started_at, completed_at"
)

Synchronous = Literal["FULL", "NORMAL"]
_URGENT = frozenset({"meta", "now"})
_NO_CALLS = (0, 0, 0.0)
_NO_ERROR = (None, None, None)
_STATEMENTS = {
    "meta": _META,
    "start": _START_NO_JOB,
    "start-in-job": _START_IN_JOB,
    "finish": _FINISH_NO_ERROR,
    "finish-error": _FINISH_ERROR,
}


class Durable(Future[None]):
    """Completes when the writes it stands for are committed; ``expedite()`` asks for the
    commit now. One per commit: every write of a group shares it."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__()
        self._store = store

    def expedite(self) -> None:
        self._store.expedite()


class SQLiteStore(RunStore):
    """Run state in ``<directory>/state.sqlite``, locked to one process at a time."""

    def __init__(
        self,
        directory: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        commit_interval: float = 0.02,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if commit_interval < 0:
            raise ValueError(f"commit_interval must be >= 0 seconds, got {commit_interval!r}")
        self.commit_interval = commit_interval
        # cuts the writer's gathering short: held while nobody asked for a commit, released
        # to ask (a lock rather than an Event: waiting on and setting an Event run Python
        # code, for every commit and every request)
        self._wake = threading.Lock()
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self.location = str(self.path)
        self.synchronous = synchronous
        self._lock: RunLock | None = None
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        # the future of the writes queued since the writer last took the queue; queueing a
        # write and taking the queue both hold the lock, so a write's future is its commit's
        self._group_lock = threading.Lock()
        self._group: Durable | None = None
        self._writer: threading.Thread | None = None
        self._closing = False
        self._shut = threading.Event()  # set by the writer once it has let go of everything
        self._failure: BaseException | None = None
        self._refusal: str | None = f"the run store {self.path} is not open"  # why writes fail
        self.commits = 0

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> None:
        if self._writer is not None:
            if not self._closing:
                return
            self.close()  # a close cut short by Ctrl-C: finish it first
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"run directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.directory)
        lock.acquire()
        try:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
            elif json.loads(version[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has state schema {version[0]}; this symbatcher reads "
                    f"schema {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            lock.release()
            raise StoreError(f"{self.path} is not a readable symbatcher state file: {exc}") from exc
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        self._conn = conn
        self._failure = None
        self._refusal = None
        self._wake.acquire(blocking=False)  # no request for a commit yet
        self._closing = False
        self._shut = threading.Event()
        writer = threading.Thread(
            target=self._write_loop, name=f"symbatcher-store-{self.directory.name}", daemon=True
        )
        try:
            writer.start()
        except BaseException:
            conn.close()
            lock.release()
            raise
        self._writer = writer

    def close(self) -> None:
        """Commit what is queued, then let go of the file and the run lock.

        The writer does the letting go itself, after its last commit, and this waits for it
        on an event. A Ctrl-C during the wait leaves the writer to finish on its own: the
        lock is never released while a commit is under way (another process could take
        the run meanwhile), and the connection never closed under it (losing the commit).
        Not ``Thread.join``: on Python 3.11 an interrupted join marks the thread stopped
        while it still runs (CPython gh-90882). Calling ``close`` again waits again.
        """
        writer = self._writer
        if writer is None:
            return
        if self._failure is None:
            self._refusal = f"the run store {self.path} is not open"
        if not self._closing:
            self._closing = True
            self._queue.put(None)
            self._commit_now()
        self._shut.wait()
        writer.join()  # on its way out: returns at once
        self._writer = None
        self._conn = None
        self._lock = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """A connection for reading; works without ``open()``, to inspect a live run."""
        if not self.path.is_file():
            raise StoreError(f"no run state at {self.path}")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    # ------------------------------------------------------------------ writes
    def read_meta(self) -> dict[str, Any]:
        conn = self._reader()
        try:
            rows = conn.execute("SELECT key, value FROM meta").fetchall()
        finally:
            conn.close()
        return {key: json.loads(value) for key, value in rows if key != "schema"}

    def write_meta(self, values: dict[str, Any]) -> None:
        rows = [(key, json.dumps(value)) for key, value in values.items()]
        self._submit(("meta", rows), wait=True)

    def item_started(self, record: ItemRecord) -> None:
        if self._refusal is not None:
            raise StoreError(self._refusal)
        if record.job is None:
            row: tuple[Any, ...] = (
                record.index,
                record.fingerprint,
                record.input,
                record.started_at,
            )
            self._queue.put(("start", row))
        else:
            row = (record.index, record.fingerprint, record.input, record.job, record.started_at)
            self._queue.put(("start-in-job", row))

    def add_call(
        self,
        index: int,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> None:
        if self._refusal is not None:
            raise StoreError(self._refusal)
        self._queue.put(("call", (prompt_tokens, completion_tokens, cost, index, model)))

    def item_finished(self, record: ItemRecord) -> Future[None]:
        completed_at = record.completed_at if record.completed_at is not None else time.time()
        errors = (record.error_type, record.error_message, record.error_traceback)
        if errors == _NO_ERROR:
            row: tuple[Any, ...] = (
                record.status,
                record.result,
                record.attempts,
                completed_at,
                record.index,
            )
            return self._submit(("finish", row))
        row = (record.status, record.result, *errors, record.attempts, completed_at, record.index)
        return self._submit(("finish-error", row))

    def _submit(self, op: tuple[Any, ...], wait: bool = False) -> Future[None]:
        """Queue a write whose future completes with the commit that holds it."""
        if self._refusal is not None:
            raise StoreError(self._refusal)
        with self._group_lock:
            self._queue.put(op)
            done = self._group
            if done is None:
                done = self._group = Durable(self)
        if op[0] in _URGENT:
            self._commit_now()
        if wait:
            done.result()
        return done

    def _write_loop(self) -> None:
        """Commit what is queued, gathering for up to ``commit_interval`` after the first
        write so that items finishing apart still share a commit. The writer sleeps through
        the interval (ordinary writes do not wake it: one wake-up per commit, not per
        write); writes someone waits on (meta, a worker that needs its earlier item
        durable) and closing wake it at once. Then the writer closes the connection and
        releases the run lock (see ``close``)."""
        conn, lock, shut = self._conn, self._lock, self._shut
        assert conn is not None and lock is not None
        try:
            self._commit_until_closed(conn)
        finally:
            try:
                conn.close()
            finally:
                lock.release()
                shut.set()

    def _commit_until_closed(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            if first[0] not in _URGENT and self.commit_interval > 0:
                self._wake.acquire(timeout=self.commit_interval)  # held again either way
            else:
                self._wake.acquire(blocking=False)  # this commit answers any request
            ops: list[tuple[Any, ...]] = [first]
            with self._group_lock:  # everything queued: one commit for all of it
                for _ in range(self._queue.qsize()):  # only this thread takes from the queue
                    more = self._queue.get_nowait()
                    if more is None:
                        stopping = True
                    else:
                        ops.append(more)
                group, self._group = self._group, None
            self._write(conn, ops, group)

    def expedite(self) -> None:
        """Commit what is queued now rather than at the end of the gathering interval."""
        if self._writer is not None:
            self._queue.put(("now", None))
            self._commit_now()

    def _commit_now(self) -> None:
        with contextlib.suppress(RuntimeError):  # released already: asked already
            self._wake.release()

    def _write(
        self, conn: sqlite3.Connection, ops: list[tuple[Any, ...]], group: Durable | None
    ) -> None:
        error: BaseException | None = self._failure
        if error is None:
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._apply(conn, ops)
                self._commit(conn)
                self.commits += 1
            except BaseException as exc:  # disk full, I/O error: stop the run, lose nothing
                logger.error("symbatcher: writing run state to %s failed: %s", self.path, exc)
                self._failure = exc
                self._refusal = f"the run store {self.path} failed: {exc}"
                error = exc
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
        if group is None:
            return
        if error is None:
            group.set_result(None)
        else:
            failure = StoreError(f"the run store {self.path} failed: {error}")
            failure.__cause__ = error
            group.set_exception(failure)

    @staticmethod
    def _apply(conn: sqlite3.Connection, ops: list[tuple[Any, ...]]) -> None:
        """One statement per kind for the whole group. Kinds go in the order meta, start,
        call, finish: an item's start and calls always precede its finish, and an item is
        started again only after its finish was committed, so the grouping keeps order.
        The calls of an item that finishes in the same group ride on its finish row."""
        by_kind: dict[str, list[Any]] = {}
        calls: dict[int, list[float]] = {}
        models: dict[str, list[float]] = {}
        for kind, args in ops:
            if kind == "now":  # a marker that woke the writer; nothing to write
                continue
            if kind == "call":
                total = calls.setdefault(args[3], [0, 0, 0.0])
                total[0] += args[0]
                total[1] += args[1]
                total[2] += args[2]
                if args[4] is not None:
                    used = models.setdefault(args[4], [0, 0, 0, 0.0])
                    used[0] += 1
                    used[1] += args[0]
                    used[2] += args[1]
                    used[3] += args[2]
            elif kind == "meta":
                by_kind.setdefault(kind, []).extend(args)
            else:
                by_kind.setdefault(kind, []).append(args)
        for kind in ("meta", "start", "start-in-job"):
            if kind in by_kind:
                conn.executemany(_STATEMENTS[kind], by_kind[kind])
        finishes = [
            (kind, [(*row[:-1], *calls.pop(row[-1], _NO_CALLS), row[-1]) for row in rows])
            for kind in ("finish", "finish-error")
            if (rows := by_kind.get(kind))
        ]
        if calls:
            conn.executemany(_CALL, [(*figures, index) for index, figures in calls.items()])
        if models:
            conn.executemany(_MODEL, [(model, *used) for model, used in models.items()])
        for kind, rows in finishes:
            conn.executemany(_STATEMENTS[kind], rows)

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    # ------------------------------------------------------------------- reads
    def finished(
        self, statuses: tuple[str, ...] = FINISHED, start: int = 0, limit: int | None = None
    ) -> dict[int, tuple[str, str]]:
        conn = self._reader()
        try:
            rows = conn.execute(
                "SELECT idx, status, fingerprint FROM items WHERE idx >= ? AND status IN "
                f"({', '.join('?' for _ in statuses)}) ORDER BY idx LIMIT ?",
                (start, *statuses, -1 if limit is None else limit),
            ).fetchall()
        finally:
            conn.close()
        return {idx: (status, fp) for idx, status, fp in rows}

    def items(
        self, statuses: tuple[str, ...] | None = None, start: int = 0
    ) -> Iterator[ItemRecord]:
        conn = self._reader()
        try:
            sql = f"SELECT {_COLUMNS} FROM items WHERE idx >= ?"
            args: list[Any] = [start]
            if statuses:
                sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
                args.extend(statuses)
            cursor = conn.execute(sql + " ORDER BY idx", args)
            while rows := cursor.fetchmany(512):
                for row in rows:
                    yield ItemRecord(*row)
        finally:
            conn.close()

    def usage_by_model(self) -> dict[str, ModelUsage]:
        conn = self._reader()
        try:
            rows = conn.execute(
                "SELECT model, calls, prompt_tokens, completion_tokens, cost FROM models "
                "ORDER BY cost DESC, calls DESC, model"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            rows = []  # a store no symbatcher of 0.7.5 or later has written to yet
        finally:
            conn.close()
        return {model: ModelUsage(*figures) for model, *figures in rows}

    def totals(self, since: float | None = None) -> StoreTotals:
        conn = self._reader()
        try:
            row = conn.execute(
                "SELECT COUNT(*), "
                "COALESCE(SUM(status = ?), 0), COALESCE(SUM(status = ?), 0), "
                "COALESCE(SUM(status = ?), 0), COALESCE(SUM(prompt_tokens), 0), "
                "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0.0), "
                "COALESCE(SUM(status IN (?, ?) AND completed_at >= ?), 0) FROM items",
                (SUCCEEDED, FAILED, RUNNING, SUCCEEDED, FAILED, since),
            ).fetchone()
        finally:
            conn.close()
        return StoreTotals(*row)
