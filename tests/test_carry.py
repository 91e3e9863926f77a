"""Threads an item starts itself: with ``carry`` their calls are the item's (batched,
counted, costed); without it they escape the run, and that is said once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from symai import Expression, Symbol

from symbatcher import BatchScheduler, Cost, Hook, ItemError, carry
from symbatcher.hooks.base import ItemContext
from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine

PARTS = 3


class FanOut(Expression):
    """Summarize each of PARTS parts on threads of its own, then join the summaries."""

    def __init__(self, carried: bool = True, fail: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.carried = carried
        self.fail = fail  # the item whose part 1 raises instead of calling the engine

    def forward(self, input: Any, **kwargs: Any) -> Any:
        def part(number: int) -> str:
            if input == self.fail and number == 1:
                raise ValueError(f"part 1 of {input} failed")
            return str(Symbol(f"{input}/part-{number}").query("Summarize"))

        work: Callable[[int], str] = carry(part) if self.carried else part
        with ThreadPoolExecutor(PARTS) as pool:
            parts = list(pool.map(work, range(PARTS)))
        return Symbol(" + ".join(parts)).query("Join")


class CallsPerItem(Hook):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[int, int] = {}
        self.cost: dict[int, float] = {}

    def on_item_done(self, item: ItemContext, outcome: Any) -> None:
        self.calls[item.index] = len(item.calls)
        self.cost[item.index] = item.cost


def check_answers(data: list[str], results: list[Any]) -> None:
    for item, result in zip(data, results, strict=True):
        text = str(result)
        assert text.count(item) == PARTS, f"{item} got someone else's answer"
        assert text.count("<i-") == PARTS
        for number in range(PARTS):
            assert f"{item}/part-{number}" in text


def test_carried_calls_are_batched_counted_and_costed_as_the_item_s() -> None:
    data = [f"<i-{i:03d}>" for i in range(40)]
    engine = SimulatedBatchEngine(latency=0.005)
    calls = CallsPerItem()
    with use_engine(engine):
        results = BatchScheduler(hooks=[Cost({"simulated": (1.0, 2.0)}), calls])(
            expr=FanOut, dataset=data, num_workers=8, batch_size=8
        )
    check_answers(data, list(results))
    per_item = PARTS + 1
    assert engine.call_count == len(data) * per_item == results.stats.engine_calls
    assert sum(engine.batches) == engine.call_count  # every call went in a batch of the run
    assert max(engine.batches) > 1  # and the parts of items were batched together
    assert calls.calls == {i: per_item for i in range(len(data))}
    assert all(cost > 0 for cost in calls.cost.values())
    assert results.stats.cost == pytest.approx(sum(calls.cost.values()))


def test_uncarried_calls_escape_the_run_and_the_first_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = [f"<i-{i:03d}>" for i in range(10)]
    engine = SimulatedEngine()
    with use_engine(engine), caplog.at_level(logging.WARNING, logger="symbatcher"):
        results = BatchScheduler()(expr=FanOut, dataset=data, num_workers=4, carried=False)
    check_answers(data, list(results))
    assert engine.call_count == 40 and results.stats.engine_calls == 10  # the joins only
    warnings = [r.getMessage() for r in caplog.records if "none of the run's workers" in r.message]
    assert len(warnings) == 1  # once per run, not once per call
    assert "ThreadPoolExecutor" in warnings[0] and "symbatcher.carry" in warnings[0]


def test_the_thread_that_started_the_run_may_call_the_engine_unwarned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class One(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(input).query("Summarize")

    with use_engine(SimulatedEngine()), caplog.at_level(logging.WARNING, logger="symbatcher"):
        follow_ups = [
            str(Symbol(str(outcome)).query("Title"))  # the program's own call, mid-run
            for _, outcome in BatchScheduler().imap(expr=One, dataset=["a", "b"], num_workers=2)
        ]
    assert len(follow_ups) == 2
    assert "none of the run's workers" not in caplog.text


def test_carry_outside_a_run_is_the_function_itself() -> None:
    def work() -> int:
        return 1

    assert carry(work) is work
    with use_engine(SimulatedEngine()) as engine:
        assert "x/part-0" in str(FanOut()("x"))  # the same expression runs without symbatcher
    assert engine.call_count == PARTS + 1


def test_a_carried_function_run_on_the_worker_itself_stays_in_the_run() -> None:
    class Inline(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return carry(lambda: Symbol(input).query("Summarize"))()

    with use_engine(SimulatedEngine()) as engine:
        results = BatchScheduler()(expr=Inline, dataset=["a", "b", "c"], num_workers=2)
    assert results.stats.engine_calls == 3 == engine.call_count
    assert all(f"{x}" in str(r) for x, r in zip("abc", results, strict=True))


@pytest.mark.parametrize("engine_cls", [SimulatedEngine, SimulatedBatchEngine])
def test_100_workers_fanning_out_with_random_latencies(engine_cls: type[SimulatedEngine]) -> None:
    data = [f"<i-{i:03d}>" for i in range(400)]
    engine = engine_cls(latency=(0.0, 0.01), seed=3)
    with use_engine(engine):
        results = BatchScheduler()(expr=FanOut, dataset=data, num_workers=100, batch_size=16)
    check_answers(data, list(results))
    assert results.stats.failed == 0
    assert engine.call_count == len(data) * (PARTS + 1) == results.stats.engine_calls
    if engine.batches:
        assert max(engine.batches) <= 16


def test_an_error_in_a_carried_part_fails_its_item_or_with_fail_fast_stops_the_run() -> None:
    data = [f"<i-{i:03d}>" for i in range(30)]
    with use_engine(SimulatedBatchEngine(latency=0.002)):
        results = BatchScheduler()(expr=FanOut, dataset=data, num_workers=6, fail="<i-007>")
    errors = [i for i, r in enumerate(results) if isinstance(r, ItemError)]
    assert errors == [7] and results[7].type == "ValueError"
    assert "part 1 of <i-007> failed" in results[7].message
    check_answers(data[:7] + data[8:], list(results[:7]) + list(results[8:]))

    engine = SimulatedBatchEngine(latency=0.01, capacity=1)  # calls wait: the stop finds some
    with use_engine(engine), pytest.raises(ValueError, match="part 1 of <i-002> failed"):
        BatchScheduler(error_handling="fail_fast")(
            expr=FanOut, dataset=data, num_workers=6, fail="<i-002>"
        )
    assert engine.call_count < len(data) * (PARTS + 1)  # the rest never went out
