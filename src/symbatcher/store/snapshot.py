"""A readable JSON view of a run's state, grouped into jobs, for people and dashboards."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from symbatcher.store.base import FAILED, PENDING, RUNNING, SUCCEEDED, RunStore, models_json
from symbatcher.store.pages import paged
from symbatcher.store.sqlite import SQLiteStore


def _job_status(counts: Counter[str], size: int) -> str:
    if counts[SUCCEEDED] == size:
        return SUCCEEDED
    if counts[SUCCEEDED] + counts[FAILED] == size:
        return FAILED if counts[FAILED] == size else "partial"
    if counts[RUNNING] or counts[SUCCEEDED] or counts[FAILED]:
        return RUNNING
    return PENDING


def _items(store: RunStore, total: Any) -> Iterator[dict[str, Any]]:
    """Every item's entry in index order, those the run never reached (up to ``total``,
    when known) as pending: one at a time, so a run of millions can be written out.

    Read a page at a time, each its own short read: whoever consumes the output (a pipe
    into a pager, a slow client) would otherwise hold one read open for as long as it
    takes, and a run going on could not reset its log meanwhile. Each item is as it was
    when its page was read.
    """
    expected = 0
    for record in paged(store, ()):
        if isinstance(total, int):
            yield from map(_pending, range(expected, min(record.index, total)))
        expected = record.index + 1
        yield {
            "original_index": record.index,
            "status": record.status,
            "error": (
                None
                if record.error_type is None
                else f"{record.error_type}: {record.error_message}"
            ),
            "cost": record.cost,
            "tokens": record.prompt_tokens + record.completion_tokens,
            "attempts": record.attempts,
            "completed_at": _iso(record.completed_at),
        }
    if isinstance(total, int):
        yield from map(_pending, range(expected, total))


def _pending(index: int) -> dict[str, Any]:
    return {
        "original_index": index,
        "status": PENDING,
        "error": None,
        "cost": 0.0,
        "tokens": 0,
        "attempts": 0,
        "completed_at": None,
    }


def _jobs(store: RunStore, meta: dict[str, Any]) -> Iterator[tuple[int, Iterator[dict[str, Any]]]]:
    """``(job_id, its items)`` in order; each job's items must be read before the next."""
    per_job = meta.get("items_per_job") or 0
    return itertools.groupby(
        _items(store, meta.get("total")),
        key=lambda item: item["original_index"] // per_job if per_job else 0,
    )


def _job_view(job_id: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(item["status"] for item in items)
    return {
        "job_id": job_id,
        "status": _job_status(counts, len(items)),
        "cost": _added(item["cost"] for item in items),
        "items": items,
    }


def _added(costs: Iterable[float]) -> float:
    """Costs added one by one, as :func:`write_snapshot` adds them while it streams (from
    Python 3.12 ``sum`` compensates rounding, and the two would differ in the last bits)."""
    total = 0.0
    for cost in costs:
        total += cost
    return total


def _head(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": meta.get("run_id"),
        "created_at": meta.get("created_at"),
        "status": meta.get("status"),
        "model": meta.get("model"),
        "items_per_job": meta.get("items_per_job"),
        "max_cost": meta.get("max_cost"),
        "total_items": meta.get("total"),
    }


def snapshot(store: RunStore) -> dict[str, Any]:
    """Run id, created_at, model, items_per_job, max_cost, jobs with their items,
    total_cost, last_updated. Items the run never reached are listed as pending when the
    dataset's size is known."""
    meta = store.read_meta()
    jobs = [_job_view(job_id, list(items)) for job_id, items in _jobs(store, meta)]
    return {
        **_head(meta),
        "jobs": jobs,
        "total_cost": _added(item["cost"] for job in jobs for item in job["items"]),
        "models": _models(store),
        "last_updated": meta.get("last_updated"),
    }


def _models(store: RunStore) -> dict[str, dict[str, Any]]:
    """Each model's calls and figures (costliest first): where a run that switches models
    spent its money."""
    return models_json(store.usage_by_model())


def write_snapshot(store: RunStore, out: TextIO) -> None:
    """The snapshot as JSON, written as it is read: one item per line, a job's status and
    cost after its items, so a run of millions needs no more memory than one item."""
    meta = store.read_meta()
    head = json.dumps(_head(meta), indent=2)
    out.write(head[: head.rindex("}")].rstrip() + ',\n  "jobs": [')
    total_cost = 0.0
    for n, (job_id, items) in enumerate(_jobs(store, meta)):
        out.write(f'{"," if n else ""}\n    {{"job_id": {job_id}, "items": [')
        counts: Counter[str] = Counter()
        size, cost = 0, 0.0
        for item in items:
            out.write(f"{',' if size else ''}\n      {json.dumps(item)}")
            counts[item["status"]] += 1
            size, cost, total_cost = size + 1, cost + item["cost"], total_cost + item["cost"]
        status = json.dumps(_job_status(counts, size))
        out.write(f'\n    ], "status": {status}, "cost": {json.dumps(cost)}}}')
    last = json.dumps(meta.get("last_updated"))
    models = json.dumps(_models(store))
    out.write(
        f'\n  ],\n  "total_cost": {json.dumps(total_cost)},\n  "models": {models},'
        f'\n  "last_updated": {last}\n}}\n'
    )


def load_snapshot(run_dir: str | Path) -> dict[str, Any]:
    """The snapshot of the run in ``run_dir``; safe while that run is going (read-only)."""
    return snapshot(SQLiteStore(run_dir))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
