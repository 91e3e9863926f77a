"""A readable JSON view of a run's state, grouped into jobs, for people and dashboards."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from symbatcher.store.base import FAILED, PENDING, RUNNING, SUCCEEDED, RunStore
from symbatcher.store.sqlite import SQLiteStore


def _job_status(counts: Counter[str], size: int) -> str:
    if counts[SUCCEEDED] == size:
        return SUCCEEDED
    if counts[SUCCEEDED] + counts[FAILED] == size:
        return FAILED if counts[FAILED] == size else "partial"
    if counts[RUNNING] or counts[SUCCEEDED] or counts[FAILED]:
        return RUNNING
    return PENDING


def snapshot(store: RunStore) -> dict[str, Any]:
    """Run id, created_at, model, items_per_job, max_cost, jobs with their items,
    total_cost, last_updated. Items the run never reached are listed as pending when the
    dataset's size is known."""
    meta = store.read_meta()
    per_job = meta.get("items_per_job") or 0
    total = meta.get("total")
    jobs: dict[int, list[dict[str, Any]]] = {}
    seen: set[int] = set()
    total_cost = 0.0
    for record in store.items():
        seen.add(record.index)
        total_cost += record.cost
        job = record.index // per_job if per_job else 0
        jobs.setdefault(job, []).append(
            {
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
        )
    if isinstance(total, int):
        for index in range(total):
            if index not in seen:
                job = index // per_job if per_job else 0
                jobs.setdefault(job, []).append(
                    {
                        "original_index": index,
                        "status": PENDING,
                        "error": None,
                        "cost": 0.0,
                        "tokens": 0,
                        "attempts": 0,
                        "completed_at": None,
                    }
                )
    job_list = []
    for job_id in sorted(jobs):
        items = sorted(jobs[job_id], key=lambda item: item["original_index"])
        counts = Counter(item["status"] for item in items)
        job_list.append(
            {
                "job_id": job_id,
                "status": _job_status(counts, len(items)),
                "cost": sum(item["cost"] for item in items),
                "items": items,
            }
        )
    return {
        "run_id": meta.get("run_id"),
        "created_at": meta.get("created_at"),
        "status": meta.get("status"),
        "model": meta.get("model"),
        "items_per_job": meta.get("items_per_job"),
        "max_cost": meta.get("max_cost"),
        "total_items": total,
        "jobs": job_list,
        "total_cost": total_cost,
        "last_updated": meta.get("last_updated"),
    }


def load_snapshot(run_dir: str | Path) -> dict[str, Any]:
    """The snapshot of the run in ``run_dir``; safe while that run is going (read-only)."""
    return snapshot(SQLiteStore(run_dir))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
