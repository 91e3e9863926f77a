"""Retry: run an item again after a transient failure, with exponential backoff and jitter.

Policies are small objects, as in tenacity: ``retry_on`` decides whether an error is worth
another attempt (default :func:`is_transient`), ``backoff`` how long to wait. A rate limit's
``retry_after`` is a floor under the wait. While an item waits, its worker counts as idle,
so batches do not wait for it, and a cancelled run wakes it at once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from symbatcher.errors import SymbatcherError
from symbatcher.hooks.base import Hook, ItemContext

RETRY_STATUS = frozenset({408, 409, 425, 429, 529})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts, dropped connections and 5xx: yes. Auth, validation: no.

    An exception may say so itself with a ``transient`` attribute; else its
    ``status_code`` decides; else transport-level errors are transient and the rest not.
    """
    for error in _chain(exc):
        if isinstance(error, SymbatcherError):
            return False
        flag = getattr(error, "transient", None)
        if isinstance(flag, bool):
            return flag
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            return status in RETRY_STATUS or status >= 500
        if isinstance(error, httpx.RequestError | TimeoutError | ConnectionError):
            return True
    return False


def retry_after(exc: BaseException) -> float | None:
    """The wait a server asked for (symai's ``EngineRateLimitError.retry_after``)."""
    for error in _chain(exc):
        value = getattr(error, "retry_after", None)
        if isinstance(value, int | float) and value >= 0:
            return float(value)
    return None


@dataclass(frozen=True)
class Backoff:
    """``initial * multiplier**(n-1)`` seconds before retry n, capped at ``maximum``;
    with ``jitter`` the wait is drawn uniformly from [0, that] ("full jitter"), which
    keeps many workers that failed together from retrying together."""

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial < 0 or self.multiplier < 1 or self.maximum < 0:
            raise ValueError(
                f"Backoff needs initial >= 0, multiplier >= 1, maximum >= 0; got {self!r}"
            )

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier ** (retry - 1))
        return rng.uniform(0.0, ceiling) if self.jitter else ceiling


class Retry(Hook):
    """Up to ``attempts`` runs of an item; only errors ``retry_on`` accepts are retried."""

    def __init__(
        self,
        attempts: int = 4,
        *,
        backoff: Backoff | None = None,
        retry_on: Callable[[BaseException], bool] = is_transient,
        max_wait: float = 300.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive integer, got {attempts!r}")
        self.attempts = attempts
        self.backoff = backoff or Backoff()
        self.retry_on = retry_on
        self.max_wait = max_wait
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.retries = 0

    def around_item(self, item: ItemContext, proceed: Callable[[], Any]) -> Any:
        attempt = 1
        while True:
            item.attempts += 1
            try:
                return proceed()
            except Exception as exc:
                if attempt >= self.attempts or not self.retry_on(exc):
                    if attempt > 1:
                        exc.add_note(f"symbatcher: gave up after {attempt} attempts")
                    raise
                wait = self._wait(attempt, exc)
                with self._rng_lock:
                    self.retries += 1
                if not item.wait(wait):
                    raise
                attempt += 1

    def _wait(self, attempt: int, exc: BaseException) -> float:
        with self._rng_lock:
            wait = self.backoff.delay(attempt, self._rng)
        asked = retry_after(exc)
        if asked is not None:
            wait = max(wait, asked)
        return min(wait, self.max_wait)
