"""Retry: transient failures retried with backoff; permanent ones fail at once."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import httpx
import pytest

from symbatcher import BatchScheduler, ItemError
from symbatcher.hooks import Backoff, Retry, is_transient, retry_after
from symbatcher.symai_setup import import_symai
from symbatcher.testing import SimulatedEngine
from tests.expressions import TestExpression

import_symai()
from symai.backend.transport import (  # noqa: E402
    EngineAPIError,
    EngineAuthenticationError,
    EngineRateLimitError,
    EngineTransportError,
)


def _api(cls: type[EngineAPIError], status: int, **extra: object) -> EngineAPIError:
    return cls(status_code=status, code=None, message=f"status {status}", request_id=None, **extra)


def test_what_counts_as_transient() -> None:
    assert is_transient(_api(EngineRateLimitError, 429, retry_after=3.0))
    assert is_transient(_api(EngineAPIError, 503))
    assert is_transient(EngineTransportError("connection reset"))
    assert is_transient(httpx.ReadTimeout("slow"))
    assert not is_transient(_api(EngineAuthenticationError, 401))
    assert not is_transient(_api(EngineAPIError, 400))
    assert not is_transient(ValueError("bad output"))
    wrapped = RuntimeError("symai wrapped it")
    wrapped.__cause__ = _api(EngineRateLimitError, 429, retry_after=7.0)
    assert is_transient(wrapped) and retry_after(wrapped) == 7.0


def test_backoff_grows_caps_and_jitters() -> None:
    plain = Backoff(initial=1.0, multiplier=2.0, maximum=5.0, jitter=False)
    rng = random.Random(0)
    assert [plain.delay(n, rng) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    jittered = Backoff(initial=1.0, maximum=5.0)
    draws = [jittered.delay(3, rng) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in draws) and len(set(draws)) > 100
    with pytest.raises(ValueError, match="multiplier >= 1"):
        Backoff(multiplier=0.5)


def test_transient_failures_are_retried_until_they_pass(engine: SimulatedEngine) -> None:
    engine.fail_on = "item1\n"
    engine.fail_times = 2
    engine.fail_status = 503
    retry = Retry(attempts=3, backoff=Backoff(initial=0.0, jitter=False))
    results = BatchScheduler(hooks=[retry])(
        expr=TestExpression, dataset=["item0", "item1", "item2"], num_workers=3
    )
    assert results.ok
    assert retry.retries == 2 and engine.call_count == 5


def test_retries_run_out_and_the_error_is_kept(engine: SimulatedEngine) -> None:
    engine.fail_on = "item1\n"
    engine.fail_status = 500
    retry = Retry(attempts=3, backoff=Backoff(initial=0.0, jitter=False))
    results = BatchScheduler(hooks=[retry])(
        expr=TestExpression, dataset=["item0", "item1"], num_workers=2
    )
    error = results[1]
    assert isinstance(error, ItemError) and "gave up after 3 attempts" in error.traceback
    assert engine.call_count == 1 + 3


def test_permanent_failures_are_not_retried(engine: SimulatedEngine) -> None:
    engine.fail_on = "item1\n"
    engine.fail_status = 401
    retry = Retry(attempts=5, backoff=Backoff(initial=0.0))
    results = BatchScheduler(hooks=[retry])(
        expr=TestExpression, dataset=["item0", "item1"], num_workers=2
    )
    assert isinstance(results[1], ItemError) and retry.retries == 0
    assert engine.call_count == 2


class _SignallingBackoff(Backoff):
    """A backoff of an hour that tells the test when a retry starts waiting."""

    waiting = threading.Event()

    def delay(self, retry: int, rng: random.Random) -> float:
        self.waiting.set()
        return 3600.0


class _FailOnceItem0Waits(TestExpression):
    def forward(self, input: object, **kwargs: object) -> object:
        if input == "item1":
            _SignallingBackoff.waiting.wait()
            raise ValueError("permanent failure while item0 waits")
        return super().forward(input, **kwargs)


def test_a_waiting_retry_wakes_when_the_run_is_cancelled(
    engine: SimulatedEngine, tmp_path: Path
) -> None:
    """... and its item, whose next try the stop prevented, is not recorded as failed: a
    resume tries it again."""
    from symbatcher.hooks import Checkpoint
    from symbatcher.store import SQLiteStore

    engine.fail_on = "item0\n"
    engine.fail_status = 503
    _SignallingBackoff.waiting.clear()
    retry = Retry(attempts=2, backoff=_SignallingBackoff())
    hooks = [Checkpoint(tmp_path / "run"), retry]
    scheduler = BatchScheduler(hooks=hooks, error_handling="fail_fast")
    with pytest.raises(ValueError, match="permanent failure while item0 waits"):
        scheduler(expr=_FailOnceItem0Waits, dataset=["item0", "item1"], num_workers=2)
    assert retry.retries == 1 and engine.call_count == 1
    stored = {r.index: (r.status, r.error_type) for r in SQLiteStore(tmp_path / "run").items()}
    assert stored == {0: ("running", None), 1: ("failed", "ValueError")}
