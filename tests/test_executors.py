"""How batches reach engines: list protocols, symai 1.x engines, malformed answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from symbatcher import BatchProtocolError, BatchScheduler, ItemError
from symbatcher.executors import (
    ListExecutor,
    PlainExecutor,
    declared_capacity,
    executor_for,
    normalize_batch,
)
from symbatcher.testing import LegacyBatchEngine, SimulatedBatchEngine, SimulatedEngine, use_engine
from tests.expressions import NestedExpression


def test_engine_shape_picks_the_executor() -> None:
    assert isinstance(executor_for(SimulatedEngine()), PlainExecutor)
    assert isinstance(executor_for(SimulatedBatchEngine()), ListExecutor)
    assert isinstance(executor_for(LegacyBatchEngine()), ListExecutor)


def test_legacy_symai_1x_batch_engine_runs_batches() -> None:
    legacy = LegacyBatchEngine(SimulatedBatchEngine(fail_on="<bad>"))
    data = [f"<l-{i}>" for i in range(20)] + ["<bad>"]
    with use_engine(legacy):
        results = BatchScheduler()(expr=NestedExpression, dataset=data, num_workers=8, batch_size=4)
    assert all(d in str(r) for d, r in zip(data[:-1], results, strict=False))
    assert isinstance(results[-1], ItemError) and "prompt matched" in results[-1].message
    assert max(legacy.inner.batches) <= 4 and sum(legacy.inner.batches) == 41


def test_list_engine_single_call_outside_a_run() -> None:
    from symai import Symbol

    with use_engine(LegacyBatchEngine()) as legacy:
        BatchScheduler()(expr=NestedExpression, dataset=[], num_workers=1)
        # outside a run a 1.x engine would get a bare argument; through a binding it
        # gets a one-call batch. Bind, then call from this (non-run) thread:
        from symbatcher.binding import bound_engines

        with bound_engines(("neurosymbolic",)):
            answer = Symbol("<solo>").query("Summarize this input")
    assert "<solo>" in str(answer) and legacy.inner.batches == [1]


class Miscounting(SimulatedBatchEngine):
    def forward_batch(self, arguments: Any) -> Any:
        return super().forward_batch(arguments)[:-1] if len(arguments) > 1 else "nonsense"


def test_wrong_batch_answers_fail_their_items_with_a_clear_error() -> None:
    with use_engine(Miscounting()):
        results = BatchScheduler(linger=1.0)(
            expr=NestedExpression,
            dataset=[f"<m-{i}>" for i in range(6)],
            num_workers=6,
            batch_size=3,
        )
    assert all(isinstance(r, ItemError) and r.type == "BatchProtocolError" for r in results)
    messages = {r.message for r in results}
    assert any("answered a batch of" in m for m in messages)


@pytest.mark.parametrize(
    "raw, expected, message",
    [
        ("text", 1, "expected a list"),
        ([(["a"], {})], 2, "with 1 results"),
        ([42], 1, "expected \\(outputs, metadata\\)"),
    ],
)
def test_normalize_batch_rejects_bad_shapes(raw: Any, expected: int, message: str) -> None:
    with pytest.raises(BatchProtocolError, match=message):
        normalize_batch(SimulatedBatchEngine(), raw, expected)


def test_normalize_batch_accepts_1x_shapes() -> None:
    error = RuntimeError("x")
    out = normalize_batch(object(), [("a", None), (["b"], {"k": 1}), error, (error, {})], 4)
    assert out == [(["a"], {}), (["b"], {"k": 1}), error, error]


# ------------------------------------------------- what a list engine serves at once
def _declaring(value: Any) -> SimulatedBatchEngine:
    engine = SimulatedBatchEngine()
    engine.max_concurrent_batches = value
    return engine


def test_a_list_engine_declares_what_it_serves_at_once() -> None:
    assert declared_capacity(SimulatedBatchEngine(capacity=3)) == 3
    assert declared_capacity(SimulatedBatchEngine()) is None
    legacy = LegacyBatchEngine()
    legacy.max_concurrent_batches = 2  # type: ignore[attr-defined]
    assert declared_capacity(legacy) == 2
    plain = SimulatedEngine()
    plain.max_concurrent_batches = 3  # its batches are only units of a cap: not read
    assert declared_capacity(plain) is None


def test_the_executor_holds_the_engines_slots() -> None:
    slots = executor_for(SimulatedBatchEngine(capacity=3)).slots
    assert slots is not None and slots.capacity == 3 and slots.in_use == 0
    assert executor_for(SimulatedBatchEngine()).slots is None
    plain = SimulatedEngine()
    plain.max_concurrent_batches = 3
    assert executor_for(plain).slots is None


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "4"])
def test_a_bad_declaration_stops_the_run_before_it_starts(value: Any) -> None:
    engine = _declaring(value)
    with pytest.raises(BatchProtocolError) as raised:
        declared_capacity(engine)
    assert str(raised.value) == (
        f"SimulatedBatchEngine.max_concurrent_batches must be a positive integer or None, "
        f"got {value!r}"
    )
    with use_engine(engine), pytest.raises(BatchProtocolError, match="max_concurrent_batches"):
        BatchScheduler()(expr=NestedExpression, dataset=["<a>"], num_workers=2)
    assert engine.call_count == 0


def _run_on(engine: SimulatedBatchEngine, **scheduler: Any) -> Any:
    with use_engine(engine):
        return _run("c", **scheduler)


def _run(tag: str, **scheduler: Any) -> Any:
    """96 items of two calls on the registered engine, their answers checked."""
    data = [f"<{tag}-{i}>" for i in range(96)]
    results = BatchScheduler(**scheduler)(
        expr=NestedExpression, dataset=data, num_workers=32, batch_size=4
    )
    assert [d in str(r) for d, r in zip(data, results, strict=True)] == [True] * len(data)
    return results.stats


def test_a_run_given_no_cap_sends_no_more_batches_than_the_engine_declares() -> None:
    declares = SimulatedBatchEngine(latency=(0.005, 0.02), capacity=2)
    stats = _run_on(declares)
    assert stats.max_inflight_batches == 2
    assert 1 <= declares.max_concurrency <= 2
    # the same engine, silent about it: 32 workers' calls go out 8 batches at a time
    silent = SimulatedBatchEngine(latency=(0.005, 0.02), capacity=2)
    silent.max_concurrent_batches = None
    stats = _run_on(silent)
    assert stats.max_inflight_batches is None
    assert silent.max_concurrency > 2


def test_a_cap_given_to_the_run_wins_over_the_engines() -> None:
    engine = SimulatedBatchEngine(latency=(0.005, 0.02), capacity=3)
    stats = _run_on(engine, max_inflight_batches=1)
    assert stats.max_inflight_batches == 1
    assert engine.max_concurrency == 1


def test_runs_at_once_share_what_the_engine_serves() -> None:
    """The engine's limit holds for the process: three runs sending to it at the same time
    (as the jobs of `symbatcher serve` do) keep to it together, and each gets its turn."""
    engine = SimulatedBatchEngine(latency=(0.005, 0.02), capacity=2)
    figures: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            figures[tag] = _run(tag)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with use_engine(engine):
        threads = [threading.Thread(target=run, args=(tag,)) for tag in "xyz"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert sorted(figures) == ["x", "y", "z"]
    assert all(stats.engine_calls == 192 and stats.failed == 0 for stats in figures.values())
    assert 1 <= engine.max_concurrency <= 2
