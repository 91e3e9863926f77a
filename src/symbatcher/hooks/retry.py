"""Retry: run an item again after a transient failure, with exponential backoff and jitter.

Policies are small objects, as in tenacity: ``retry_on`` decides whether an error is worth
another attempt (default :func:`is_transient`), ``backoff`` how long to wait. A rate limit's
``retry_after`` is a floor under the wait. While an item waits, its worker counts as idle,
so batches do not wait for it, and a cancelled run wakes it at once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from symbatcher.checks import positive_int
from symbatcher.errors import RunCancelledError, SymbatcherError, error_chain
from symbatcher.hooks.base import CallContext, Hook, ItemContext, RunContext
from symbatcher.overrides import EngineOverride

RETRY_STATUS = frozenset({408, 409, 425, 429, 529})


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts, dropped connections and 5xx: yes. Auth, validation: no.

    An exception may say so itself with a ``transient`` attribute; else its
    ``status_code`` decides; else transport-level errors are transient and the rest not.
    """
    for error in error_chain(exc):
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
    for error in error_chain(exc):
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
        positive_int("attempts", attempts)
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
                if not item.wait(wait):  # the run stopped: cut short, not failed
                    raise RunCancelledError("the run stopped before the item's next try") from exc
                attempt += 1

    def _wait(self, attempt: int, exc: BaseException) -> float:
        with self._rng_lock:
            wait = self.backoff.delay(attempt, self._rng)
        asked = retry_after(exc)
        if asked is not None:
            wait = max(wait, asked)
        return min(wait, self.max_wait)


def is_rate_limit(exc: BaseException) -> bool:
    """A 429: the provider asks us to slow down (symai's ``EngineRateLimitError``)."""
    return any(getattr(error, "status_code", None) == 429 for error in error_chain(exc))


#: symai's transport retries each HTTP request itself (twice, asleep in the worker). While
#: a run retries calls, those retries are off on its engines.
transport_retries = EngineOverride("client_max_retries", lambda _own: 0)


class CallRetry(Hook):
    """Up to ``attempts`` tries of one engine call on transient errors (5xx, timeouts,
    dropped connections), so an item's earlier calls are not made again; 429s get up to
    ``rate_limited`` further tries, each after at least the ``Retry-After`` the server
    asked for (being told to wait is not a failure).

    It takes over from symai's transport, whose own retries are off for the run's engines
    while it runs: one retry policy, and a waiting worker counts as idle (batches do not
    wait for it) instead of sleeping unseen inside the transport.
    """

    def __init__(
        self,
        attempts: int = 3,
        *,
        rate_limited: int = 20,
        backoff: Backoff | None = None,
        retry_on: Callable[[BaseException], bool] = is_transient,
        max_wait: float = 60.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("attempts", attempts), ("rate_limited", rate_limited + 1)):
            positive_int(name, value)
        self.attempts = attempts
        self.rate_limited = rate_limited
        self.backoff = backoff or Backoff(initial=0.25, maximum=8.0)
        self.retry_on = retry_on
        self.max_wait = max_wait
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.retries = 0
        self.rate_limit_retries = 0
        self._engines: list[Any] = []
        self._bound: set[int] = set()
        self._run: RunContext | None = None

    def on_start(self, run: RunContext) -> None:
        self._run = run
        # only those it holds: restoring one it was refused would release another's hold
        self._engines = [e for e in run.engines.values() if transport_retries.apply(e)]
        self._bound = {id(e) for e in run.engines.values()}

    def on_end(self, run: RunContext) -> None:
        for engine in self._engines:
            transport_retries.restore(engine)
        self._engines = []

    def around_call(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        # An engine the run did not bind (a DynamicEngine block's, made anew each time the
        # block is entered) has symai's transport retries off for the call alone.
        engine = call.engine
        held = id(engine) not in self._bound and transport_retries.apply(engine)
        try:
            return self._tries(call, proceed)
        finally:
            if held:
                transport_retries.restore(engine)

    def _tries(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        failures = limited = 0
        while True:
            try:
                return proceed()
            except Exception as exc:
                throttled = is_rate_limit(exc)
                if throttled:
                    limited += 1
                    give_up = limited > self.rate_limited
                else:
                    failures += 1
                    give_up = failures >= self.attempts or not self.retry_on(exc)
                if give_up:
                    if failures + limited > 1:
                        exc.add_note(
                            f"symbatcher: call gave up after {failures + limited} tries "
                            f"({limited} rate-limited)"
                        )
                    raise
                with self._lock:
                    wait = self.backoff.delay(limited if throttled else failures, self._rng)
                    if throttled:
                        self.rate_limit_retries += 1
                    else:
                        self.retries += 1
                asked = retry_after(exc)
                if asked is not None:
                    wait = max(wait, asked)
                if self._run is not None and not self._run.wait(min(wait, self.max_wait)):
                    raise RunCancelledError("the run stopped before the call's next try") from exc
                if self._run is not None:
                    self._run.call_retried()
