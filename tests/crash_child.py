"""A run that a crash test kills part-way: ``python -m tests.crash_child RUN_DIR LOG N [MODE K]``.

MODE ``commit`` kills the process inside its K-th state commit (rows written, not
committed); ``items`` inside the first commit whose rows bring the succeeded items to K
(a kill part-way however the writer groups its commits); ``external`` prints ``done <n>``
lines so the test can SIGKILL it from outside; ``cli`` runs the items with ``symbatcher
run`` instead of BatchManager (exit code as its).
Every engine call is appended to LOG as ``<pid> <item>`` before it is answered, so the test
can count what each process paid for.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
from typing import Any

from symbatcher import BatchManager
from symbatcher.cli import main as cli_main
from symbatcher.hooks.progress import ProgressEvent
from symbatcher.store.sqlite import SQLiteStore
from symbatcher.testing import SimulatedEngine, use_engine
from symbatcher.testing.engines import prompt_of
from tests.expressions import TestExpression


class LoggingEngine(SimulatedEngine):
    def __init__(self, log: str, latency: tuple[float, float]) -> None:
        super().__init__(latency=latency, record_calls=False)
        self._log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def forward(self, argument: Any) -> Any:
        item = prompt_of(argument).split("\n")[1]
        os.write(self._log, f"{os.getpid()} {item}\n".encode())
        return super().forward(argument)


def main() -> None:
    run_dir, log, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else ""
    kill_at = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if mode in ("commit", "items"):
        commits = [0]
        original = SQLiteStore._commit

        def commit(self: SQLiteStore, conn: sqlite3.Connection) -> None:
            commits[0] += 1
            if mode == "commit":
                reached = commits[0] == kill_at
            else:  # the connection sees its own rows, written and not yet committed
                sql = "SELECT COUNT(*) FROM items WHERE status = 'succeeded'"
                reached = conn.execute(sql).fetchone()[0] >= kill_at
            if reached:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-commit: rows written, not committed
            original(self, conn)

        SQLiteStore._commit = commit  # type: ignore[method-assign]

    lock = threading.Lock()

    def report(event: ProgressEvent) -> None:
        if mode == "external":
            with lock:  # events come from worker threads; one whole line each
                sys.stdout.write(f"done {event.done}\n")
                sys.stdout.flush()

    # slower calls when killed from outside, so the kill lands while items are in flight
    latency = (0.01, 0.03) if mode == "external" else (0.001, 0.004)
    if mode == "cli":
        data = os.path.join(os.path.dirname(run_dir), "items.jsonl")
        with open(data, "w", encoding="utf-8") as items:
            items.writelines(f'"item{i}"\n' for i in range(count))
        argv = ["run", "tests.expressions:TestExpression", data, "--run-dir", run_dir]
        with use_engine(LoggingEngine(log, (0.05, 0.1))):
            sys.exit(cli_main([*argv, "--workers", "8", "--progress", "off"]))
    with use_engine(LoggingEngine(log, latency)):
        manager = BatchManager(
            TestExpression,
            [f"item{i}" for i in range(count)],
            items_per_job=50,
            max_parallel_jobs=4,
            workers_per_job=8,
            state_path=run_dir,
            save_results_dir=os.path.join(run_dir, "out"),
        )
        stats = manager.run(print_progress=False, on_progress=report, progress_interval=0)
    print(f"finished {stats.status} {stats.succeeded}", flush=True)


if __name__ == "__main__":
    main()
