"""What a hook is, and what it sees of the run, of an item and of an engine call.

A hook is a symai ``Expression`` with one concern. The run calls it at a few points, each a
no-op by default, so a hook overrides only what it needs:

- ``on_start(run)`` before any worker starts (open a store, read what an earlier run left);
- ``restore(item)`` for each item taken: an outcome already known (resume), or None;
- ``admit(item)`` before an item starts: a reason to start no further items, or None;
- ``on_item_start(item)`` when the item starts (record it as running);
- ``around_item(item, proceed)`` wraps running the expression on the item (retry);
- ``around_call(call, proceed)`` wraps each engine call the item makes (cost, raw answers);
- ``on_call_done(call)`` after each engine call, its figures final (persist them);
- ``on_item_done(item, outcome)`` once the outcome is final (persist, progress);
- ``on_end(run)`` when the run is over, whatever ended it (``run.status`` says what).

``on_item_done`` runs in the item's worker before the outcome is handed to the caller; a
hook may return a future from it (the checkpoint's commit), and the run then hands the
outcome on when that completes, so an outcome the caller has seen is already durable while
the worker goes on with its next item. Hooks run in the order given; the
``around_*`` wrappers nest with the first hook outermost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from symbatcher.symai_setup import import_symai

import_symai()

from symai import Expression  # noqa: E402

from symbatcher.store.base import ModelUsage, costliest_first  # noqa: E402

if TYPE_CHECKING:
    from symbatcher.store.base import RunStore


@dataclass
class CallRecord:
    """One engine call an item made: what it cost and, if a hook kept it, the raw answer."""

    engine: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    raw: Any = None
    model: str | None = None  # as the cost hook found it (the answer's, else the engine's)


@dataclass
class ItemContext:
    """One item on its way through the run; hooks add to its figures."""

    index: int
    input: Any
    run: RunContext
    attempts: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    fingerprint: str | None = None
    input_json: str | None = None

    @property
    def job(self) -> int | None:
        per_job = self.run.items_per_job
        return self.index // per_job if per_job else None

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.calls)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls)

    def wait(self, seconds: float) -> bool:
        """Sleep without holding up the run's batches; False if the run was cancelled."""
        return self.run.wait(seconds)


@dataclass
class CallContext:
    """One engine call: which engine, symai's argument, and the item that made it."""

    engine_name: str
    engine: Any
    argument: Any
    item: ItemContext | None
    record: CallRecord


class RunContext:
    """What hooks share about one run: its identity, its totals so far, and its end.

    Totals include what an earlier run on the same store did (``restored``), so a budget
    and a progress bar continue where the last process stopped.
    """

    def __init__(
        self,
        *,
        expression_fingerprint: str,
        dataset: Any,
        total: int | None,
        num_workers: int,
        model: str | None,
        idle: Callable[[], Any] | None = None,
        items_per_job: int | None = None,
        replay_restored: bool = True,
        indexed: bool = False,
        engines: dict[str, Any] | None = None,
        expression_settings: dict[str, Any] | None = None,
    ) -> None:
        self.expression_fingerprint = expression_fingerprint
        self.expression_settings = expression_settings  # an instance's plain attributes
        self.dataset = dataset
        self.total = total
        self.num_workers = num_workers
        self.model = model
        self.items_per_job = items_per_job
        self.replay_restored = replay_restored  # hand restored outcomes to the caller
        self.restorable = True  # a store hook clears it when there is nothing to restore
        self.indexed = indexed  # the dataset yields (index, item): chosen items of a run
        self.engines = engines or {}  # the real engines the run binds, by name
        self.run_id: str | None = None
        self.store: RunStore | None = None
        self.max_cost: float | None = None
        self.strict_pricing = False  # a budget needs every call priced
        self.status = "running"
        self.stop_reason: str | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()  # no new items
        self._cancelled = threading.Event()  # and nothing more to wait for
        self._on_stop: list[Callable[[], None]] = []
        self._idle = idle
        # totals, this process and restored from earlier ones
        self.models: dict[str, ModelUsage] = {}  # each model's calls, earlier runs included
        self.restored = 0
        self.done = 0
        self.succeeded = 0
        self.failed = 0
        self.in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.spent = 0.0  # cost of finished items and of calls made by items in flight
        self.finished_item_cost = 0.0
        self.finished_items = 0
        self.retried_calls = 0  # engine calls made again by a call retry (CallRetry)

    # ------------------------------------------------------------------ totals
    def call_retried(self) -> None:
        with self._lock:
            self.retried_calls += 1

    def add_call(self, record: CallRecord) -> None:
        with self._lock:
            self.prompt_tokens += record.prompt_tokens
            self.completion_tokens += record.completion_tokens
            self.spent += record.cost
            if record.model is not None:
                call = ModelUsage(1, record.prompt_tokens, record.completion_tokens, record.cost)
                self.models[record.model] = self.models.get(record.model, ModelUsage()) + call

    def models_by_cost(self) -> dict[str, ModelUsage]:
        """Each model's calls and figures so far, earlier runs included, costliest first."""
        with self._lock:
            return costliest_first(self.models)

    def item_started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def item_cut_short(self) -> None:
        """An item in flight the run's stop cut short: not done, it runs again on resume."""
        with self._lock:
            self.in_flight -= 1

    def item_finished(self, item: ItemContext, failed: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.done += 1
            self.finished_items += 1
            self.finished_item_cost += item.cost
            if failed:
                self.failed += 1
            else:
                self.succeeded += 1

    def begin_from(
        self,
        *,
        succeeded: int,
        failed: int,
        spent: float,
        prompt_tokens: int,
        completion_tokens: int,
        items: int,
        models: dict[str, ModelUsage] | None = None,
    ) -> None:
        """Seed the totals with what earlier runs on the same store did and spent."""
        with self._lock:
            for model, used in (models or {}).items():
                self.models[model] = self.models.get(model, ModelUsage()) + used
            self.restored = succeeded + failed
            self.done += succeeded + failed
            self.succeeded += succeeded
            self.failed += failed
            self.spent += spent
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.finished_item_cost += spent
            self.finished_items += items

    @property
    def mean_item_cost(self) -> float:
        return self.finished_item_cost / self.finished_items if self.finished_items else 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    # ---------------------------------------------------------------- stopping
    def halt(self, reason: str, status: str) -> None:
        """Start no further items; those in flight finish. The first reason wins."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
                self.status = status
        self._stopped.set()
        for callback in list(self._on_stop):
            callback()

    def stopped(self) -> bool:
        return self._stopped.is_set()

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def cancelled_event(self) -> threading.Event:
        """Set when the run is cancelled; for hooks that block on something else too."""
        return self._cancelled

    def wait(self, seconds: float) -> bool:
        with self.idle():
            return not self._cancelled.wait(seconds)

    def cancel(self) -> None:
        self._stopped.set()
        self._cancelled.set()
        for callback in list(self._on_stop):
            callback()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the run halts or is cancelled (to wake a hook's waits)."""
        self._on_stop.append(callback)

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Mark the calling worker idle for the block, so no batch waits for its calls."""
        if self._idle is None:
            yield
            return
        with self._idle():
            yield


class Hook(Expression):  # type: ignore[misc]
    """A concern layered around a run's items and engine calls; see the module docstring.

    Used alone, a hook is an Expression whose ``forward(item, proceed)`` is
    ``around_item``, so ``Retry(attempts=3)(ctx, fn)`` retries ``fn``.
    """

    #: hooks this one relies on (e.g. Budget on Cost); added if the run lacks them
    requires: tuple[type[Hook], ...] = ()
    #: hooks start in this order (stable): the checkpoint first, so the others see the
    #: totals it restored
    start_order: int = 0

    def on_start(self, run: RunContext) -> None:
        return None

    def restore(self, item: ItemContext) -> Restored | None:
        return None

    def admit(self, item: ItemContext) -> str | None:
        return None

    def on_item_start(self, item: ItemContext) -> None:
        return None

    def around_item(self, item: ItemContext, proceed: Callable[[], Any]) -> Any:
        return proceed()

    def around_call(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        return proceed()

    def on_call_done(self, call: CallContext) -> None:
        return None

    def on_item_done(self, item: ItemContext, outcome: Any) -> Future[Any] | None:
        """May return a future: the outcome reaches the caller once it completes."""
        return None

    def on_end(self, run: RunContext) -> None:
        return None

    def forward(self, item: ItemContext, proceed: Callable[[], Any]) -> Any:
        return self.around_item(item, proceed)


@dataclass(frozen=True)
class Restored:
    """An item's outcome known from an earlier run: a value, or an ItemError (None when the
    run does not replay restored outcomes to its caller)."""

    outcome: Any
