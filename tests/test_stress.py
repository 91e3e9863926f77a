"""Many workers, random latencies, injected failures: answers never cross, nothing hangs."""

from __future__ import annotations

import pytest

from symbatcher import BatchScheduler, ItemError
from symbatcher.testing import (
    SimulatedBatchEngine,
    SimulatedEngine,
    SimulatedEngineError,
    use_engine,
)
from tests.expressions import DoubleNestedExpression, NestedExpression


def check_own_answers(data: list[str], results: list[object]) -> int:
    failed = 0
    for item, result in zip(data, results, strict=True):
        if isinstance(result, ItemError):
            failed += 1
            continue
        text = str(result)
        assert item in text
        assert text.count("<w-") == text.count(item), f"{item} got someone else's answer"
    return failed


@pytest.mark.parametrize("engine_cls", [SimulatedEngine, SimulatedBatchEngine])
@pytest.mark.parametrize("seed", [1, 2])
def test_200_workers_random_latencies(engine_cls: type[SimulatedEngine], seed: int) -> None:
    data = [f"<w-{i:04d}>" for i in range(1000)]
    engine = engine_cls(latency=(0.0, 0.02), seed=seed)
    with use_engine(engine):
        results = BatchScheduler()(
            expr=NestedExpression, dataset=data, num_workers=200, batch_size=16
        )
    assert check_own_answers(data, list(results)) == 0
    assert engine.call_count == 2000 == results.stats.engine_calls
    if isinstance(engine, SimulatedBatchEngine):
        assert max(engine.batches) <= 16
        # batching actually happened: calls share batches (1.98-2.12 calls a batch in 8
        # runs on 3.11 and 3.13; a bound of 2 failed one of them)
        assert results.stats.mean_batch_size > 1.5
    assert results.stats.batches == len(engine.batches) or not isinstance(
        engine, SimulatedBatchEngine
    )


@pytest.mark.parametrize("max_inflight", [None, 3])
def test_failures_under_load_are_confined_and_counted(max_inflight: int | None) -> None:
    data = [f"<w-{i:04d}>" for i in range(600)]
    engine = SimulatedBatchEngine(latency=(0.0, 0.01), seed=5, fail_every=7, fail_batch_every=11)
    with use_engine(engine):
        results = BatchScheduler(max_inflight_batches=max_inflight)(
            expr=DoubleNestedExpression, dataset=data, num_workers=120, batch_size=8
        )
    failed = check_own_answers(data, list(results))
    assert failed == results.stats.failed > 0
    assert results.stats.succeeded + failed == 600
    assert all(isinstance(e.exception, SimulatedEngineError) for e in results.errors)
    assert max(engine.batches) <= 8
    assert engine.call_count == results.stats.engine_calls


def test_linger_zero_and_batch_size_one_still_complete() -> None:
    data = [f"<w-{i:04d}>" for i in range(300)]
    with use_engine(SimulatedBatchEngine(latency=(0.0, 0.005), seed=9)) as engine:
        results = BatchScheduler(linger=0)(
            expr=NestedExpression, dataset=data, num_workers=64, batch_size=1
        )
    assert check_own_answers(data, list(results)) == 0
    assert set(engine.batches) == {1}
