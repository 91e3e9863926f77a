"""BatchManager: the facade for people who think in jobs rather than in runs.

It is a BatchScheduler run with the hooks a long paid run needs, in a fixed order:
Checkpoint (state in ``state_path``, so ``run()`` resumes by itself), Cost, JobLimit, Budget,
Retry, Progress and, if asked, SaveResults. Outcomes stream into the store, never into
memory; :meth:`results` reads them back in dataset order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from symbatcher.checks import positive_int
from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.hooks.base import Hook
from symbatcher.hooks.budget import Budget
from symbatcher.hooks.checkpoint import Checkpoint
from symbatcher.hooks.cost import Cost
from symbatcher.hooks.jobs import JobLimit
from symbatcher.hooks.progress import Progress, ProgressEvent
from symbatcher.hooks.retry import Retry
from symbatcher.hooks.save_results import SaveResults
from symbatcher.pricing import PriceLike
from symbatcher.results import ItemError, RunStats
from symbatcher.run import ErrorHandling
from symbatcher.scheduler import BatchScheduler, own_engines
from symbatcher.store.base import FAILED, RUNNING, SUCCEEDED, ItemRecord, ModelUsage
from symbatcher.store.codec import loads
from symbatcher.store.pages import paged
from symbatcher.store.snapshot import snapshot, write_snapshot
from symbatcher.store.sqlite import SQLiteStore
from symbatcher.store.summary import jobs_done

logger = logging.getLogger("symbatcher")


@dataclass(frozen=True)
class ManagerStats:
    """Where the whole run stands, across every process that worked on it."""

    status: str
    total: int | None
    succeeded: int
    failed: int
    running: int
    pending: int | None
    tokens: int
    cost: float
    max_cost: float | None
    jobs: int | None
    jobs_done: int
    last_run: RunStats | None
    models: dict[str, ModelUsage] = field(default_factory=dict)  # costliest first

    @property
    def done(self) -> int:
        return self.succeeded + self.failed


class BatchManager:
    """Runs ``expr`` over ``dataset`` in jobs of ``items_per_job`` items, resumably.

    ``max_parallel_jobs`` jobs have items in flight at once, each with up to
    ``workers_per_job`` concurrent items (so ``max_parallel_jobs * workers_per_job`` worker
    threads). ``max_cost`` is a budget in USD over all runs of this state; ``prices`` maps
    model names to USD per million tokens for models symai has no price for. ``dataset``
    may be a generator only if :meth:`run` is called once per process; pass a list (or
    a callable returning a fresh iterable) to call it again.
    """

    def __init__(
        self,
        expr: Any,
        dataset: Iterable[Any] | Callable[[], Iterable[Any]],
        *,
        items_per_job: int = 100,
        max_parallel_jobs: int = 5,
        workers_per_job: int = 8,
        batch_size: int = 16,
        max_inflight_batches: int | None = None,
        linger: float = DEFAULT_LINGER,
        max_cost: float | None = None,
        prices: Mapping[str, PriceLike] | None = None,
        state_path: str | Path = "symbatcher-run",
        save_results_dir: str | Path | None = None,
        save_raw: bool = False,
        retry: Retry | int | None = 4,
        error_handling: ErrorHandling = "continue",
        engines: Iterable[str] | str | Mapping[str, Any] = ("neurosymbolic",),
        hooks: Iterable[Hook] = (),
        **expr_kwargs: Any,
    ) -> None:
        JobLimit(items_per_job, max_parallel_jobs)  # validates both
        positive_int("workers_per_job", workers_per_job)
        if max_cost is not None:
            Budget(max_cost)  # validates
        self.expr = expr
        self._dataset = dataset
        self._runs = 0
        self.items_per_job = items_per_job
        self.max_parallel_jobs = max_parallel_jobs
        self.num_workers = max_parallel_jobs * min(workers_per_job, items_per_job)
        self.batch_size = batch_size
        if max_inflight_batches is not None:
            positive_int("max_inflight_batches", max_inflight_batches)
        self.max_inflight_batches = max_inflight_batches
        if linger < 0:
            raise ValueError(f"linger must be >= 0 seconds, got {linger!r}")
        self.linger = linger
        self.max_cost = max_cost
        self.prices = dict(prices or {})
        self.state_path = Path(state_path)
        self.save_results_dir = Path(save_results_dir) if save_results_dir else None
        self.save_raw = save_raw
        self.retry = Retry(retry) if isinstance(retry, int) else retry
        self.error_handling: ErrorHandling = error_handling
        # a model by name is built once, here: a misspelt one or a missing key fails now
        self.engines = own_engines(engines) if isinstance(engines, Mapping) else engines
        self.extra_hooks = list(hooks)
        self.expr_kwargs = expr_kwargs
        self._last: RunStats | None = None

    # -------------------------------------------------------------------- runs
    def run(
        self,
        print_progress: bool = True,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        progress_interval: float = 0.5,
    ) -> ManagerStats:
        """Run (or resume) until every item is done or the budget is reached.

        ``on_progress`` gets a :class:`ProgressEvent` at most every ``progress_interval``
        seconds and at the end.
        """
        dataset = self._fresh_dataset()
        checkpoint = Checkpoint(self.state_path)
        self._execute(dataset, checkpoint, print_progress, on_progress, progress_interval)
        return self.stats

    def retry_failed(
        self,
        print_progress: bool = True,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> ManagerStats:
        """Run the items that failed once more, and those an interruption left running,
        from their inputs in the store."""
        store = SQLiteStore(self.state_path)
        if not store.path.is_file():
            raise FileNotFoundError(f"no run state at {store.path}: nothing to retry")
        totals = store.totals()
        if totals.failed or totals.running:
            failed = ((r.index, loads(r.input)) for r in paged(store, (FAILED, RUNNING)))
            checkpoint = Checkpoint(self.state_path, retry_failed=True)
            self._execute(failed, checkpoint, print_progress, on_progress, 0.5, indexed=True)
        return self.stats

    def _execute(
        self,
        dataset: Iterable[Any],
        checkpoint: Checkpoint,
        print_progress: bool,
        on_progress: Callable[[ProgressEvent], None] | None,
        progress_interval: float,
        indexed: bool = False,
    ) -> None:
        hooks: list[Hook] = [
            checkpoint,
            Cost(self.prices),
            JobLimit(self.items_per_job, self.max_parallel_jobs),
        ]
        if self.max_cost is not None:
            hooks.append(Budget(self.max_cost))
        if self.retry is not None:
            hooks.append(self.retry)
        hooks.append(
            Progress(
                show=None if print_progress else False,
                callback=on_progress,
                interval=progress_interval,
            )
        )
        if self.save_results_dir is not None:
            hooks.append(SaveResults(self.save_results_dir, raw=self.save_raw))
        hooks.extend(self.extra_hooks)
        scheduler = BatchScheduler(
            self.engines,
            hooks=hooks,
            error_handling=self.error_handling,
            max_inflight_batches=self.max_inflight_batches,
            linger=self.linger,
        )
        context: dict[str, Any] = {
            "replay_restored": False,
            "items_per_job": self.items_per_job,
        }
        if indexed:
            context["total"] = self._stored_total()
        stream = scheduler._stream(
            self.expr,
            dataset,
            self.num_workers,
            self.batch_size,
            dict(self.expr_kwargs),
            context,
            indexed=indexed,
        )
        with stream:
            for _ in stream:
                pass  # outcomes are in the store already
        self._last = stream.stats

    def _fresh_dataset(self) -> Iterable[Any]:
        source = self._dataset
        if callable(source) and not isinstance(source, Iterable):
            return source()
        if isinstance(source, Iterator) and self._runs:
            raise RuntimeError(
                "the dataset is an iterator that an earlier run() consumed; pass a list or "
                "a callable that returns a fresh iterable to run again"
            )
        self._runs += 1
        return source

    def _stored_total(self) -> int | None:
        total = SQLiteStore(self.state_path).read_meta().get("total")
        return total if isinstance(total, int) else None

    # ----------------------------------------------------------------- reading
    @property
    def stats(self) -> ManagerStats:
        store = SQLiteStore(self.state_path)
        if not store.path.is_file():
            return ManagerStats("new", None, 0, 0, 0, None, 0, 0.0, self.max_cost, None, 0, None)
        meta = store.read_meta()
        totals = store.totals()
        total = meta.get("total") if isinstance(meta.get("total"), int) else None
        per_job = meta.get("items_per_job")
        done = jobs_done(store, per_job if isinstance(per_job, int) else self.items_per_job, total)
        return ManagerStats(
            status=str(meta.get("status", "new")),
            total=total,
            succeeded=totals.succeeded,
            failed=totals.failed,
            running=totals.running,
            pending=None if total is None else total - totals.finished - totals.running,
            tokens=totals.prompt_tokens + totals.completion_tokens,
            cost=totals.cost,
            max_cost=self.max_cost,
            jobs=None if total is None else -(-total // self.items_per_job),
            jobs_done=done,
            last_run=self._last,
            models=store.usage_by_model(),
        )

    def results(self) -> Iterator[Any]:
        """Outcomes in dataset order from the store: a value, or an ItemError. Read a page
        at a time: a caller working through them holds no read open (a run going on on the
        store would not get its log reset meanwhile)."""
        for record in paged(SQLiteStore(self.state_path), ()):
            yield _outcome(record)

    def snapshot(self) -> dict[str, Any]:
        """The JSON view of the run, as a dict: a dict per item (for a run of millions,
        :meth:`write_snapshot` writes the same JSON holding one at a time)."""
        return snapshot(SQLiteStore(self.state_path))

    def write_snapshot(self, out: TextIO) -> None:
        """The snapshot's JSON written to ``out`` as it is read (``symbatcher status
        --json``): a run of a million items takes 67 MB so, where the dict takes 2 GB."""
        write_snapshot(SQLiteStore(self.state_path), out)


def _outcome(record: ItemRecord) -> Any:
    if record.status == SUCCEEDED:
        return loads(record.result)
    return ItemError(
        index=record.index,
        type=record.error_type or record.status,
        message=record.error_message or f"item is {record.status}",
        traceback=record.error_traceback or "",
    )
