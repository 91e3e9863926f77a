"""Full runs through symai's own vLLM and llama.cpp engines against the local server.

No mock of symai: its engine classes build the requests, httpx sends them over 127.0.0.1,
and the server answers, fails, drops, stalls or rate-limits as each test configures.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest
from symai import Expression, Symbol

from symbatcher import BatchScheduler, CallRetry, ItemError, RateLimit, local_engine
from symbatcher.hooks.retry import Backoff
from symbatcher.testing import use_engine
from symbatcher.testing.server import LocalServer


class TwoSteps(Expression):  # type: ignore[misc]
    """A nested pipeline: the second call's prompt carries the first call's answer."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = Symbol(input).query("Describe")
        return Symbol(f"{input} | {str(first)[-30:]}").query("Summarize")


class OneStep(Expression):  # type: ignore[misc]
    def forward(self, input: Any, **kwargs: Any) -> Any:
        return Symbol(input).query("Answer")


def fast_retry(attempts: int = 6) -> CallRetry:
    return CallRetry(attempts, backoff=Backoff(initial=0.01, maximum=0.05), seed=1)


def own_answers(results: Any, n: int) -> bool:
    """Each item's answer echoes its own input (the server answers with the prompt)."""
    return all(f"item-{i} |" in str(results[i]) for i in range(n))


@pytest.mark.parametrize("kind", ["vllm", "llamacpp"])
def test_nested_expressions_through_symai_engines(local_server: LocalServer, kind: str) -> None:
    local_server.configure(latency=(0.0, 0.02))
    engine = local_engine(local_server.url, kind=kind, timeout=5.0)
    with use_engine(engine):
        results = BatchScheduler()(
            expr=TwoSteps, dataset=[f"item-{i}" for i in range(40)], num_workers=16
        )
    assert results.stats.failed == 0
    assert own_answers(results, 40)
    assert local_server.stats()["ok"] == 80
    assert engine.client_max_retries is None  # symai's transport retries are back


def test_server_errors_and_dropped_connections_are_retried_per_call(
    local_server: LocalServer, local_vllm: Any
) -> None:
    local_server.configure(error_rate=0.15, drop_rate=0.1, seed=3)
    retry = fast_retry(attempts=8)
    results = BatchScheduler(hooks=[retry])(
        expr=TwoSteps, dataset=[f"item-{i}" for i in range(40)], num_workers=16
    )
    stats = local_server.stats()
    assert results.stats.failed == 0
    assert own_answers(results, 40)
    assert stats["errors"] > 0 and stats["dropped"] > 0
    # every failure cost one more request, and nothing else did
    assert stats["requests"] == 80 + stats["errors"] + stats["dropped"]
    assert retry.retries == stats["errors"] + stats["dropped"]
    # the run's figures say how many of its engine calls were retries
    assert results.stats.engine_calls == stats["requests"]
    assert results.stats.retried_calls == retry.retries
    assert f"({retry.retries} of them retries)" in results.stats.calls_line()


def test_spent_retries_leave_the_error_recorded(local_server: LocalServer, local_vllm: Any) -> None:
    local_server.configure(error_rate=1.0)
    results = BatchScheduler(hooks=[fast_retry(attempts=2)])(
        expr=OneStep, dataset=["a", "b"], num_workers=2
    )
    assert results.stats.failed == 2
    error = results[0]
    assert isinstance(error, ItemError)
    assert error.type == "EngineAPIError" and "injected server error" in error.message
    assert local_server.stats()["requests"] == 4  # two tries each, symai's own retries off


def test_timeouts_become_retried_failures_of_that_call(local_server: LocalServer) -> None:
    local_server.configure(slow_rate=0.2, slow_latency=3.0, seed=5)
    engine = local_engine(local_server.url, timeout=0.3)
    with use_engine(engine):
        results = BatchScheduler(hooks=[fast_retry(attempts=8)])(
            expr=OneStep, dataset=[f"item-{i}" for i in range(20)], num_workers=10
        )
    stats = local_server.stats()
    assert results.stats.failed == 0
    assert stats["slow"] > 0
    assert stats["requests"] == 20 + stats["slow"]


def test_unconfigured_limit_is_learned_from_429s(
    local_server: LocalServer, local_vllm: Any
) -> None:
    local_server.configure(rpm=1200, burst_seconds=0.5, latency=0.02)  # 20/s, 10 at once
    limit = RateLimit()  # nothing configured: adapts to the 429s
    scheduler = BatchScheduler(hooks=[limit])
    first = scheduler(expr=OneStep, dataset=[f"item-{i}" for i in range(120)], num_workers=30)
    learning = local_server.stats()
    assert first.stats.failed == 0 and learning["ok"] == 120
    assert learning["rate_limited"] >= 1  # it had to learn
    learned = next(iter(limit.learned_rpm.values()))
    assert learned is not None and learned < 2400
    # settled: the same hook keeps what it learned; without it this run meets ~2 429s a call
    local_server.configure(reset=True)
    second = scheduler(expr=OneStep, dataset=[f"more-{i}" for i in range(120)], num_workers=30)
    settled = local_server.stats()
    assert second.stats.failed == 0 and settled["ok"] == 120
    assert settled["rate_limited"] <= 24, settled


def test_configured_rpm_keeps_under_the_server_limit(
    local_server: LocalServer, local_vllm: Any
) -> None:
    local_server.configure(rpm=1320, burst_seconds=0.5)  # the server allows 22/s
    limit = RateLimit(rpm=1200, burst=0.1)  # we keep to 20/s, 2 at once
    started = time.monotonic()
    results = BatchScheduler(hooks=[limit])(
        expr=OneStep, dataset=[f"item-{i}" for i in range(60)], num_workers=30
    )
    elapsed = time.monotonic() - started
    assert results.stats.failed == 0
    assert local_server.stats()["rate_limited"] == 0
    assert elapsed >= (60 - 2) / 20  # paced: no faster than the configured rate allows


def test_tpm_limit_uses_estimates_reconciled_with_usage(
    local_server: LocalServer, local_vllm: Any
) -> None:
    local_server.configure(tpm=66_000, burst_seconds=0.5)
    limit = RateLimit(tpm=60_000, burst=0.1)  # 1,000 tokens/s
    results = BatchScheduler(hooks=[limit])(
        expr=OneStep, dataset=[f"item-{i}" for i in range(30)], num_workers=15
    )
    stats = local_server.stats()
    assert results.stats.failed == 0
    assert stats["rate_limited"] == 0
    assert limit.waited > 0  # the token budget, not the workers, set the pace
    limiter = next(iter(limit._limiters.values()))
    assert limiter.completions == 30 and limiter.completion_mean > 0


def test_concurrency_cap(local_server: LocalServer, local_vllm: Any) -> None:
    local_server.configure(latency=0.03)
    BatchScheduler(hooks=[RateLimit(max_concurrency=3)])(
        expr=OneStep, dataset=[f"item-{i}" for i in range(30)], num_workers=12
    )
    assert local_server.stats()["max_in_flight"] <= 3


class ReadsTransportRetries(Expression):  # type: ignore[misc]
    """Answers, and notes what symai's transport would retry while the run is on."""

    seen: ClassVar[list[Any]] = []

    def forward(self, input: Any, **kwargs: Any) -> Any:
        from symai.functional import EngineRepository

        self.seen.append(EngineRepository.get("neurosymbolic").client_max_retries)
        return Symbol(input).query("Answer")


def test_http_engines_get_call_policies_by_default(
    local_server: LocalServer, local_vllm: Any
) -> None:
    local_server.configure(error_rate=0.2, seed=2)
    ReadsTransportRetries.seen = []
    results = BatchScheduler()(
        expr=ReadsTransportRetries, dataset=[f"item-{i}" for i in range(20)], num_workers=5
    )
    stats = local_server.stats()
    assert set(ReadsTransportRetries.seen) == {0}  # symai's own retries off during the run
    assert local_vllm.client_max_retries is None  # and back afterwards
    assert stats["errors"] > 0
    # each error cost one request more (the default CallRetry), up to 3 tries a call
    assert stats["requests"] == 20 - results.stats.failed + stats["errors"]
    assert stats["errors"] - 3 * results.stats.failed < 20
    assert results.stats.succeeded >= 17
    assert BatchScheduler(http_defaults=False)._http_hooks() == []


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBATCHER_RPM", "3000")
    monkeypatch.setenv("SYMBATCHER_MAX_CONCURRENCY", "8")
    limit = RateLimit.from_env()
    assert limit.rpm == 3000 and limit.max_concurrency == 8 and limit.tpm is None
    monkeypatch.setenv("SYMBATCHER_TPM", "lots")
    with pytest.raises(ValueError, match="SYMBATCHER_TPM"):
        RateLimit.from_env()
    with pytest.raises(ValueError, match="rpm"):
        RateLimit(rpm=-5)
