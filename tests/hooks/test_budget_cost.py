"""Cost per call from usage and prices; a budget that holds within a run and across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from symbatcher import BatchScheduler, Hook
from symbatcher.hooks import Budget, Checkpoint, Cost
from symbatcher.pricing import Usage, as_pricing, cost_of, symai_pricing, usage_of
from symbatcher.results import ItemPending
from symbatcher.testing import SimulatedEngine, use_engine
from tests.expressions import NestedExpression, TestExpression

PRICES = {"simulated": (1.0, 2.0)}


def test_usage_from_metadata_and_cost_from_a_price() -> None:
    usage = usage_of(object(), {"usage": {"input_tokens": 100, "output_tokens": 50}})
    assert usage == Usage(100, 50)
    assert cost_of(Usage(1_000_000, 500_000), as_pricing((2.0, 4.0))) == pytest.approx(4.0)
    assert usage_of(object(), {"no": "usage"}) is None


def test_symai_pricing_tables_are_used() -> None:
    price = symai_pricing("claude-sonnet-4-5")
    assert price is not None and price.input > 0 and price.output > price.input
    assert symai_pricing("no-such-model") is None


def test_bad_price_entries_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs 'input' and 'output'"):
        as_pricing({"in": 1.0})


def test_cost_per_item_and_run(engine: SimulatedEngine) -> None:
    scheduler = BatchScheduler(hooks=[Cost(PRICES)])
    results = scheduler(expr=NestedExpression, dataset=["a", "b", "c"], num_workers=3)
    # each answer reports tokens ~ len/4; two calls per item
    assert results.stats.tokens > 0
    expected = sum(
        (max(1, len(p) // 4) * 1.0 + max(1, len(f"sim({p})") // 4) * 2.0) / 1e6
        for p in engine.calls
    )
    assert results.stats.cost == pytest.approx(expected)


def test_a_price_for_a_model_no_call_came_from_is_named(
    engine: SimulatedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    prices = {"simulated": (1.0, 2.0), "gpt-4o": (2.5, 10.0), "sim": (1.0, 1.0)}
    cost = Cost(prices)
    with caplog.at_level("WARNING", logger="symbatcher"):
        BatchScheduler(hooks=[cost])(expr=TestExpression, dataset=["a", "b"], num_workers=2)
    warned = [r.getMessage() for r in caplog.records if "a price was given" in r.getMessage()]
    assert warned == [
        "symbatcher: a price was given for 'gpt-4o', 'sim', but no call of this run came "
        "from them; its calls came from 'simulated' (a price applies to the model's exact name)"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="symbatcher"):  # every price used: nothing said
        BatchScheduler(hooks=[Cost(PRICES)])(expr=TestExpression, dataset=["a"], num_workers=1)
        BatchScheduler(hooks=[cost])(expr=TestExpression, dataset=[], num_workers=1)  # no calls
    assert not [r for r in caplog.records if "a price was given" in r.getMessage()]


def test_a_budget_stops_new_items_and_leaves_the_rest_pending(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    data = [f"item{i}" for i in range(200)]
    per_item = (max(1, len("item0") // 4 + 5) * 1.0) / 1e6  # about the cost of one item
    budget = 40 * per_item
    scheduler = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Budget(budget), Cost(PRICES)])
    results = scheduler(expr=TestExpression, dataset=data, num_workers=4, batch_size=2)
    assert results.status == "budget_reached"
    assert results.pending and isinstance(results[-1], ItemPending)
    assert "budget reached" in str(results[-1])
    ran = engine.call_count
    assert 0 < ran < 200
    # the overshoot is at most what was in flight (num_workers items)
    assert results.stats.cost <= budget + 4 * results.stats.cost / ran
    # same budget again: nothing new may start, spent counts across runs
    again = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Budget(budget), Cost(PRICES)])(
        expr=TestExpression, dataset=data, num_workers=4, batch_size=2
    )
    assert again.status == "budget_reached" and engine.call_count == ran
    # a larger budget continues where it stopped
    more = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Budget(1.0), Cost(PRICES)])(
        expr=TestExpression, dataset=data, num_workers=4, batch_size=2
    )
    assert more.status == "completed" and more.ok
    assert engine.call_count == 200


def test_with_a_budget_the_first_item_runs_alone_so_16_workers_keep_close_to_it() -> None:
    """Until an item ended nothing is known of what one costs: all 16 workers starting at
    once spent over three times a budget of five items (each of them ran to its end)."""
    data = [f"item-{i:03d}" for i in range(200)]  # one length: every item costs the same
    with use_engine(SimulatedEngine(latency=0.005)) as engine:
        one = BatchScheduler(hooks=[Cost(PRICES)])(expr=NestedExpression, dataset=data[:1])
        per_item = one.stats.cost
        engine.reset()
        budget = Budget(5 * per_item)
        results = BatchScheduler(hooks=[budget, Cost(PRICES)])(
            expr=NestedExpression, dataset=data, num_workers=16
        )
    assert results.status == "budget_reached"
    assert engine.calls[0].count("item-") == engine.calls[1].count("item-") == 1
    first = engine.calls[0].split("item-")[1][:3]
    assert first in engine.calls[1]  # the probe's two calls came before any other's
    assert 5 <= results.stats.succeeded <= 10
    assert results.stats.cost <= 2 * budget.max_cost  # was over 3x: 16 items at once


def test_a_budget_of_nothing_starts_nothing(engine: SimulatedEngine) -> None:
    results = BatchScheduler(hooks=[Budget(0), Cost(PRICES)])(
        expr=TestExpression, dataset=["a", "b"], num_workers=2
    )
    assert results.status == "budget_reached" and engine.call_count == 0
    assert all(isinstance(r, ItemPending) for r in results)


def test_workers_waiting_for_the_first_item_s_cost_end_when_the_run_halts() -> None:
    class HaltInTheFirstCall(Hook):
        def around_call(self, call: Any, proceed: Any) -> Any:
            call.item.run.halt("halted by the test", "failed")  # while the others wait
            return proceed()

    data = [f"item-{i:03d}" for i in range(100)]
    with use_engine(SimulatedEngine()) as engine:
        results = BatchScheduler(hooks=[Budget(1.0), Cost(PRICES), HaltInTheFirstCall()])(
            expr=NestedExpression, dataset=data, num_workers=16
        )
    assert results.status == "failed" and results.stats.stop_reason == "halted by the test"
    assert results.stats.succeeded == 1 and engine.call_count == 2  # the probe, alone
    assert all(isinstance(r, ItemPending) for r in results[1:])


def test_a_budget_with_an_unpriced_model_halts_and_a_resume_with_its_price_runs_the_rest(
    engine: SimulatedEngine, tmp_path: Path
) -> None:
    """Every call to the model would be paid for and then fail: under a budget the first
    item runs alone, so one call is. No item failed (the run's set-up did): each stays
    pending, so the same run resumed with the price runs every one."""
    data = [f"i{n}" for n in range(200)]
    scheduler = BatchScheduler(hooks=[Checkpoint(tmp_path), Budget(1.0)])
    results = scheduler(expr=TestExpression, dataset=data, num_workers=4)
    assert results.status == "failed" and results.stats.failed == 0
    assert "no price known for model 'simulated'" in str(results.stats.stop_reason)
    assert all(isinstance(r, ItemPending) for r in results)
    halted = [r for r in results if "the run halted: no price known" in r.reason]
    assert len(halted) == 1 and engine.call_count == 1  # the first item runs alone: one call
    assert len(results) < 200 and "no price known for model 'simulated'" in str(results[0])

    again = BatchScheduler(hooks=[Checkpoint(tmp_path), Cost(PRICES), Budget(1.0)])
    resumed = again(expr=TestExpression, dataset=data, num_workers=4)
    assert resumed.status == "completed" and resumed.stats.succeeded == 200
    assert engine.call_count == len(halted) + 200  # the halted ones ran again
    assert all("i" in str(r) for r in resumed)


def test_budget_rejects_a_negative_amount() -> None:
    with pytest.raises(ValueError, match="max_cost must be a non-negative"):
        Budget(-1)


def test_usage_comes_from_symai_engines_own_usage_record() -> None:
    from types import SimpleNamespace

    from symai.backend.engines.neurosymbolic.vllm.engine import VLLMEngine

    engine = object.__new__(VLLMEngine)  # symai's own method; no server needed to read usage
    raw = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=120, completion_tokens=30, total_tokens=150)
    )
    assert usage_of(engine, {"raw_output": raw, "usage": {"prompt_tokens": 1}}) == Usage(120, 30)


def test_a_model_symai_prices_is_costed_without_a_user_table() -> None:
    from symbatcher.pricing import PriceBook

    price = PriceBook().price("claude-sonnet-4-5")
    expected = symai_pricing("claude-sonnet-4-5")
    assert price == expected
    user = PriceBook({"claude-sonnet-4-5": (1.0, 1.0)}).price("claude-sonnet-4-5")
    assert user is not None and user.input == 1.0  # a user's table wins
