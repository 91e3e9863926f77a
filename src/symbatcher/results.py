"""What a run hands back: one outcome per item in dataset order, and the run's figures."""

from __future__ import annotations

import traceback as tb
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from symbatcher.dollars import usd
from symbatcher.store.base import ModelUsage, models_json


@dataclass(frozen=True)
class ItemError:
    """Stands in an item's result slot when that item raised; the run went on without it."""

    index: int
    type: str
    message: str
    traceback: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, index: int, exc: BaseException) -> ItemError:
        return cls(
            index=index,
            type=type(exc).__qualname__,
            message=str(exc),
            traceback="".join(tb.format_exception(exc)),
            exception=exc,
        )

    def __str__(self) -> str:
        return f"item {self.index} failed: {self.type}: {self.message}"


@dataclass(frozen=True)
class ItemPending:
    """Stands in the slot of an item the run took but did not finish: not started (the
    budget was reached), or cut short when the run stopped (Ctrl-C, ``fail_fast``, the
    consumer leaving) while its call waited; a resumed run runs it."""

    index: int
    reason: str

    def __str__(self) -> str:
        return f"item {self.index} not run: {self.reason}"


@dataclass(frozen=True)
class RunStats:
    """Figures of one run; computed once the run ended (or so far, while it runs)."""

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    engine_calls: int = 0
    plain_calls: int = 0  # of those, calls to a plain engine: each sent on its own
    retried_calls: int = 0  # of those, calls a call retry made again after a failure
    batches: int = 0  # sent to a list-taking engine (a plain engine's calls go one by one)
    batch_size: int = 1
    max_inflight_batches: int | None = None  # the cap the run used (given or the engine's)
    wall_time: float = 0.0
    pending: int = 0  # taken but not finished (budget reached, or cut short by a stop)
    restored: int = 0  # outcomes replayed from an earlier run (resume), not run again
    tokens: int = 0  # earlier runs of a resumed run included, as the cost
    cost: float = 0.0  # USD, earlier runs of a resumed run included
    status: str = "new"
    stop_reason: str | None = None  # why no further item started (a budget, a halt)
    #: each model's calls, tokens and cost (priced by a Cost hook), earlier runs of a
    #: resumed run included, costliest first
    models: dict[str, ModelUsage] = field(default_factory=dict)

    @property
    def mean_batch_size(self) -> float:
        """Calls per batch of a list-taking engine (a plain engine's calls are none's)."""
        return self.batched_calls / self.batches if self.batches else 0.0

    @property
    def batched_calls(self) -> int:
        return self.engine_calls - self.plain_calls

    @property
    def mean_batch_fill(self) -> float:
        """Mean batch size as a fraction of ``batch_size``: 1.0 means every batch was full."""
        return self.mean_batch_size / self.batch_size if self.batch_size else 0.0

    @property
    def batched(self) -> bool:
        """Whether batches meant anything: some call went to a list-taking engine. A plain
        engine gets each call on its own, so its batches (and their fill) are only counts."""
        return self.plain_calls < self.engine_calls

    def calls_line(self) -> str:
        """The engine calls and how they went, in words."""
        calls = f"{self.engine_calls} engine calls"
        if self.retried_calls:
            calls += f" ({self.retried_calls} of them retries)"
        if self.engine_calls and not self.batched:
            return f"{calls}, each on its own (a plain engine)"
        cap = f", at most {self.max_inflight_batches} at once" if self.max_inflight_batches else ""
        fill = f"mean batch fill {self.mean_batch_fill:.0%} of {self.batch_size}{cap}"
        if self.plain_calls:  # a DynamicEngine block's, say, beside a list-taking engine's
            return (
                f"{calls}: {self.batched_calls} in {self.batches} batches, {fill}; "
                f"{self.plain_calls} each on its own (a plain engine)"
            )
        return f"{calls} in {self.batches} batches, {fill}"

    @property
    def items_per_second(self) -> float:
        return self.items / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def calls_per_second(self) -> float:
        return self.engine_calls / self.wall_time if self.wall_time > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "stop_reason": self.stop_reason,
            "items": self.items,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
            "restored": self.restored,
            "tokens": self.tokens,
            "cost": round(self.cost, 6),
            "engine_calls": self.engine_calls,
            "plain_calls": self.plain_calls,
            "retried_calls": self.retried_calls,
            "batches": self.batches,
            "mean_batch_size": round(self.mean_batch_size, 3),
            "mean_batch_fill": round(self.mean_batch_fill, 3),
            "max_inflight_batches": self.max_inflight_batches,
            "wall_time": round(self.wall_time, 4),
            "items_per_second": round(self.items_per_second, 2),
            "calls_per_second": round(self.calls_per_second, 2),
            "models": models_json(self.models),
        }

    def summary(self, spend: bool = True) -> str:
        """One line of the figures. ``spend=False`` leaves out the tokens and cost, which
        count the earlier runs of a resumed run too (a line about this run alone)."""
        extra = ""
        if self.restored:
            extra += f", {self.restored} restored"
        if self.pending:
            extra += f", {self.pending} pending"
        spent = spend and (self.tokens or self.cost)
        cost = f", {self.tokens:,} tokens, {usd(self.cost)}" if spent else ""
        cap = f", at most {self.max_inflight_batches} at once" if self.max_inflight_batches else ""
        if not self.engine_calls:
            calls = "no engine calls"
        elif self.batched:
            some = f": {self.batched_calls}" if self.plain_calls else ""
            calls = (
                f"{self.engine_calls} engine calls{some} in {self.batches} batches, "
                f"mean batch {self.mean_batch_size:.1f}/{self.batch_size} "
                f"(fill {self.mean_batch_fill:.0%}{cap})"
            )
            if self.plain_calls:
                calls += f", {self.plain_calls} each on its own (a plain engine)"
        else:
            calls = self.calls_line()
        return (
            f"{self.status}: {self.items} items ({self.succeeded} ok, {self.failed} failed"
            f"{extra}) in "
            f"{self.wall_time:.2f}s: {self.items_per_second:.1f} items/s, {calls}{cost}"
        )


class RunResults(Sequence[Any]):
    """The outcomes of a run in dataset order: a value, or an :class:`ItemError`."""

    def __init__(self, outcomes: list[Any], stats: RunStats) -> None:
        self._outcomes = outcomes
        self.stats = stats

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._outcomes[index]

    def __len__(self) -> int:
        return len(self._outcomes)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._outcomes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunResults):
            return self._outcomes == other._outcomes
        if isinstance(other, list):
            return self._outcomes == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def errors(self) -> list[ItemError]:
        return [o for o in self._outcomes if isinstance(o, ItemError)]

    @property
    def pending(self) -> list[ItemPending]:
        return [o for o in self._outcomes if isinstance(o, ItemPending)]

    @property
    def status(self) -> str:
        return self.stats.status

    @property
    def ok(self) -> bool:
        return not any(isinstance(o, ItemError | ItemPending) for o in self._outcomes)

    def __repr__(self) -> str:
        return f"RunResults({len(self)} items, {self.stats.failed} failed)"
