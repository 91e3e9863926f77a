"""A run's counts and its failures grouped by error type, read from its store.

For the end of a command-line run and ``symbatcher status``: both must stay cheap on a run of
millions of items, so this reads the store's totals and streams only the failed rows,
keeping a few examples per error type (the full snapshot holds a dict per item). Rows are
read a page at a time (``pages.paged``), as the snapshot reads them: ``status`` of a run
going on holds no read open while it counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from symbatcher.store.base import FAILED, FINISHED, ModelUsage, RunStore
from symbatcher.store.pages import paged

#: failed items named per error type
EXAMPLES = 3


@dataclass
class FailureGroup:
    """The failed items of one error type: how many, and the first few of them."""

    error_type: str
    count: int = 0
    indices: list[int] = field(default_factory=list)
    message: str = ""  # the first item's, first line


@dataclass(frozen=True)
class RunSummary:
    items: int
    succeeded: int
    failed: int
    pending: int  # not finished: never started, or running (now, or when a process stopped)
    cost: float
    failures: list[FailureGroup]  # largest group first
    running: int = 0  # of the pending, those started: in flight, or cut short by a stop
    finished_since: int = 0  # of the finished, those that ended at or after ``since``
    cost_per_item: float = 0.0  # of the finished: the rate at which the rest would cost
    models: dict[str, ModelUsage] = field(default_factory=dict)  # costliest first


def summarize(store: RunStore, since: float | None = None) -> RunSummary:
    totals = store.totals(since)
    total = store.read_meta().get("total")
    items = total if isinstance(total, int) and total >= totals.items else totals.items
    groups: dict[str, FailureGroup] = {}
    for record in paged(store, (FAILED,)):
        kind = record.error_type or "Error"
        group = groups.setdefault(kind, FailureGroup(kind))
        group.count += 1
        if len(group.indices) < EXAMPLES:
            group.indices.append(record.index)
        if not group.message:
            group.message = (record.error_message or "").strip().split("\n", 1)[0]
    return RunSummary(
        items=items,
        succeeded=totals.succeeded,
        failed=totals.failed,
        pending=items - totals.finished,
        cost=totals.cost,
        failures=sorted(groups.values(), key=lambda g: (-g.count, g.indices[0])),
        running=totals.running,
        finished_since=totals.finished_since,
        cost_per_item=totals.cost_per_item,
        models=store.usage_by_model(),
    )


def jobs_done(store: RunStore, per_job: int, total: int | None) -> int:
    """How many jobs (items ``[j * per_job, (j + 1) * per_job)``) have every item finished,
    as the snapshot counts them, holding a count per job rather than a dict per item."""
    seen: Counter[int] = Counter()
    finished: Counter[int] = Counter()
    for record in paged(store, ()):
        job = record.index // per_job
        seen[job] += 1
        if record.status in FINISHED:
            finished[job] += 1

    def size(job: int) -> int:
        return min(per_job, total - job * per_job) if total is not None else seen[job]

    return sum(count == size(job) for job, count in finished.items())
