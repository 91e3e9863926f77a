"""The run store interface: what a durable run keeps per item and about itself.

One interface, several backends (``SQLiteStore`` on disk, ``MemoryStore`` for tests and
throwaway runs), so hooks never know where state lives. Figures per item accumulate per
engine call (``add_call``) so that calls made by an item whose process died still count
against the budget when the run resumes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
FINISHED = (SUCCEEDED, FAILED)


@dataclass(slots=True)
class ItemRecord:
    """One item's row. ``input`` and ``result`` are JSON text."""

    index: int
    fingerprint: str
    status: str = PENDING
    input: str | None = None
    result: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    job: int | None = None
    started_at: float | None = None
    completed_at: float | None = None


@dataclass(frozen=True)
class ModelUsage:
    """The engine calls of one model over a run (every process), and what they used."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost + other.cost,
        )


def models_json(models: dict[str, ModelUsage]) -> dict[str, dict[str, Any]]:
    """Each model's figures as JSON holds them (a snapshot, the service, ``RunStats``)."""
    return {model: asdict(used) for model, used in models.items()}


def costliest_first(models: dict[str, ModelUsage]) -> dict[str, ModelUsage]:
    """Where the money went first: by cost, then calls, then name (as the SQLite store
    orders them)."""
    ranked = sorted(models.items(), key=lambda kv: (-kv[1].cost, -kv[1].calls, kv[0]))
    return dict(ranked)


@dataclass(frozen=True)
class StoreTotals:
    items: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    finished_since: int = 0  # of the finished, those that ended at or after ``since``

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def cost_per_item(self) -> float:
        """What a finished item cost on average: the rate at which to tell what the rest
        of a run would cost."""
        return self.cost / self.finished if self.finished else 0.0

    @property
    def tokens_per_item(self) -> float:
        finished = self.finished
        return (self.prompt_tokens + self.completion_tokens) / finished if finished else 0.0


class RunStore(ABC):
    """Durable state of one run. Writes from many worker threads; reads by one."""

    location: str = "<memory>"

    @abstractmethod
    def open(self) -> None:
        """Take the run for this process (lock) and make the store ready."""

    @abstractmethod
    def close(self) -> None:
        """Flush what is queued, release the lock. Idempotent."""

    @abstractmethod
    def read_meta(self) -> dict[str, Any]:
        """The run's metadata; empty for a new run."""

    @abstractmethod
    def write_meta(self, values: dict[str, Any]) -> None:
        """Merge ``values`` into the metadata, durably."""

    @abstractmethod
    def item_started(self, record: ItemRecord) -> None:
        """Record that an item is running (need not be durable when this returns)."""

    @abstractmethod
    def add_call(
        self,
        index: int,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> None:
        """Add one engine call's figures to an item, and to its model's (need not be
        durable on return)."""

    @abstractmethod
    def item_finished(self, record: ItemRecord) -> Future[None]:
        """Record an item's final status and result; the future completes once durable
        (with a StoreError if it cannot be)."""

    @abstractmethod
    def finished(
        self, statuses: tuple[str, ...] = FINISHED, start: int = 0, limit: int | None = None
    ) -> dict[int, tuple[str, str]]:
        """``index -> (status, fingerprint)`` of the items with one of ``statuses`` (by
        default every succeeded or failed one), in index order from ``start``, at most
        ``limit`` of them."""

    @abstractmethod
    def items(
        self, statuses: tuple[str, ...] | None = None, start: int = 0
    ) -> Iterator[ItemRecord]:
        """Items in index order from ``start``, optionally only those with a status."""

    @abstractmethod
    def totals(self, since: float | None = None) -> StoreTotals:
        """Counts and figures over all items, earlier processes included; ``since`` (a
        ``time.time()``) also counts the items that ended at or after it."""

    @abstractmethod
    def usage_by_model(self) -> dict[str, ModelUsage]:
        """The calls each model answered, and their figures, over all processes, costliest
        first (calls whose model was not known, and those of a store before 0.7.5, are in
        none)."""

    def __enter__(self) -> RunStore:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
