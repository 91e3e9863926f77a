"""JobLimit: the dataset cut into jobs of ``items_per_job``; at most ``max_parallel_jobs``
have items in flight at once. Put it before a Budget: an item it admits counts as in flight.

Items are taken in dataset order, so this mostly matters when a slow item holds its job
open while later items race ahead: an item of a new job then waits (its worker counted
idle, so batches do not wait for it) until a job finishes its items in flight.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from symbatcher.checks import positive_int
from symbatcher.hooks.base import Hook, ItemContext, RunContext


class JobLimit(Hook):
    def __init__(self, items_per_job: int, max_parallel_jobs: int) -> None:
        super().__init__()
        for name, value in (
            ("items_per_job", items_per_job),
            ("max_parallel_jobs", max_parallel_jobs),
        ):
            positive_int(name, value)
        self.items_per_job = items_per_job
        self.max_parallel_jobs = max_parallel_jobs
        self._active: Counter[int] = Counter()  # job -> its items in flight
        self._cond = threading.Condition()
        self.most_active = 0

    def on_start(self, run: RunContext) -> None:
        with self._cond:
            self._active.clear()  # a hook may serve several runs, one after another
        run.items_per_job = self.items_per_job
        run.on_stop(self._wake)

    def admit(self, item: ItemContext) -> str | None:
        job = item.index // self.items_per_job
        run = item.run
        with self._cond:
            if not self._admissible(job):
                with run.idle():
                    while not self._admissible(job) and not run.stopped():
                        self._cond.wait()
            if run.stopped():
                return run.stop_reason or "the run is stopping"
            self._active[job] += 1
            self.most_active = max(self.most_active, len(self._active))
        return None

    def on_item_done(self, item: ItemContext, outcome: Any) -> None:
        job = item.index // self.items_per_job
        with self._cond:
            self._active[job] -= 1
            if self._active[job] <= 0:
                del self._active[job]
                self._cond.notify_all()

    def _admissible(self, job: int) -> bool:
        return job in self._active or len(self._active) < self.max_parallel_jobs

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
