"""A run store in memory: the same interface, nothing survives the process (tests, demos).

Indices are kept sorted beside the records (items arrive nearly in order, so an insert is
an append), so a read from ``start`` finds its place by bisection and copies only what it
returns: reading a run a page at a time costs the pages, not the run once per page.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from symbatcher.store.base import (
    FINISHED,
    ItemRecord,
    ModelUsage,
    RunStore,
    StoreTotals,
    costliest_first,
)

#: records copied per hold of the lock
CHUNK = 512


class MemoryStore(RunStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, Any] = {}
        self._items: dict[int, ItemRecord] = {}
        self._order: list[int] = []  # the indices in _items, sorted
        self._models: dict[str, ModelUsage] = {}

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def read_meta(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._meta)

    def write_meta(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._meta.update(values)

    def item_started(self, record: ItemRecord) -> None:
        with self._lock:
            row = self._items.get(record.index)
            if row is None:
                row = self._items[record.index] = copy.copy(record)
                if self._order and record.index < self._order[-1]:
                    bisect.insort(self._order, record.index)
                else:
                    self._order.append(record.index)
            row.fingerprint, row.input = record.fingerprint, record.input
            row.job, row.started_at = record.job, record.started_at
            row.status, row.result = "running", None
            row.error_type = row.error_message = row.error_traceback = None
            row.completed_at = None

    def add_call(
        self,
        index: int,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> None:
        with self._lock:
            row = self._items[index]
            row.prompt_tokens += prompt_tokens
            row.completion_tokens += completion_tokens
            row.cost += cost
            if model is not None:
                call = ModelUsage(1, prompt_tokens, completion_tokens, cost)
                self._models[model] = self._models.get(model, ModelUsage()) + call

    def usage_by_model(self) -> dict[str, ModelUsage]:
        with self._lock:
            return costliest_first(self._models)

    def item_finished(self, record: ItemRecord) -> Future[None]:
        with self._lock:
            row = self._items[record.index]
            row.status, row.result = record.status, record.result
            row.error_type, row.error_message = record.error_type, record.error_message
            row.error_traceback = record.error_traceback
            row.attempts += record.attempts
            row.completed_at = record.completed_at
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def finished(
        self, statuses: tuple[str, ...] = FINISHED, start: int = 0, limit: int | None = None
    ) -> dict[int, tuple[str, str]]:
        with self._lock:
            rows = (self._items[i] for i in self._from(start))
            chosen = (r for r in rows if r.status in statuses)
            return {r.index: (r.status, r.fingerprint) for r in itertools.islice(chosen, limit)}

    def items(
        self, statuses: tuple[str, ...] | None = None, start: int = 0
    ) -> Iterator[ItemRecord]:
        """Copies of the records, a chunk per hold of the lock, so a reader that stops
        early costs what it read."""
        while True:
            with self._lock:
                rows = (self._items[i] for i in self._from(start))
                chosen = (r for r in rows if not statuses or r.status in statuses)
                chunk = [copy.copy(r) for r in itertools.islice(chosen, CHUNK)]
            yield from chunk
            if len(chunk) < CHUNK:
                return
            start = chunk[-1].index + 1

    def _from(self, start: int) -> Iterator[int]:
        """The indices from ``start`` on, in order (under the lock)."""
        order = self._order
        return map(order.__getitem__, range(bisect.bisect_left(order, start), len(order)))

    def totals(self, since: float | None = None) -> StoreTotals:
        with self._lock:
            rows = list(self._items.values())
        return StoreTotals(
            finished_since=0
            if since is None
            else sum(
                r.status in FINISHED and r.completed_at is not None and r.completed_at >= since
                for r in rows
            ),
            items=len(rows),
            succeeded=sum(r.status == "succeeded" for r in rows),
            failed=sum(r.status == "failed" for r in rows),
            running=sum(r.status == "running" for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            cost=sum(r.cost for r in rows),
        )
