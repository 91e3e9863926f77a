"""How long a service keeps ended jobs: their queue rows, items and run directories.

A job's items stay in the queue and its results in its run directory after it ends, since
``retry`` and ``GET /jobs/{id}/results`` need them; a service that runs for months would
keep every job it ever ran (a job of a million items is about 75 MB in the queue alone).
:class:`Retention` removes the jobs that ended more than ``keep`` seconds ago, once when
it starts and then every ``every`` seconds, on a thread of its own that waits on an event
between sweeps (so ``stop()`` ends it at once).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from symbatcher.durations import spoken
from symbatcher.queue.jobs import JobQueue

logger = logging.getLogger("symbatcher")

#: bounds of the time between sweeps: a tenth of ``keep`` within them, so a job outlives
#: its term by at most a tenth of it (and an hour), and a short term is not swept in a spin
MIN_EVERY = 1.0
MAX_EVERY = 3600.0


class Retention:
    """Removes jobs that ended more than ``keep`` seconds ago, with their run directories
    under ``root``. Queued, running and submitting jobs are never touched; a job retried
    before its term ran out is queued again, so it stays."""

    def __init__(
        self, queue: JobQueue, root: str | Path, keep: float, every: float | None = None
    ) -> None:
        if not 0 < keep < float("inf"):
            raise ValueError(f"keep must be a number of seconds > 0, got {keep!r}")
        self.queue = queue
        self.root = Path(root)
        self.keep = keep
        self.every = every if every is not None else min(MAX_EVERY, max(MIN_EVERY, keep / 10))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove what has outlived its term now; the ids removed, oldest first."""
        removed: list[str] = []
        while jobs := self.queue.expire(self.keep, now):  # a short write per hundred jobs
            for job in jobs:
                self._remove_run(job.id)
                removed.append(job.id)
        if removed:
            logger.info(
                "symbatcher: removed %d job(s) ended over %s ago", len(removed), spoken(self.keep)
            )
        return removed

    def _remove_run(self, job_id: str) -> None:
        try:
            shutil.rmtree(self.root / job_id)
        except FileNotFoundError:
            pass  # it never ran (cancelled while queued)
        except OSError as exc:
            logger.warning("symbatcher: cannot remove %s: %s", self.root / job_id, exc)

    def start(self) -> Retention:
        self._stopping.clear()
        # daemon, as the pool's workers: a process told to exit at once must not wait for
        # it at interpreter exit; stop() is what waits
        self._thread = threading.Thread(target=self._loop, name="symbatcher-retention", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # a busy or broken queue: say so, and try again next time
                logger.exception("symbatcher: removing expired jobs failed")
            if self._stopping.wait(self.every):
                return

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Retention:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
