"""BatchScheduler end to end on simulated engines: the original suite's scenarios and more."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from symai import Expression, Symbol, core

from symbatcher import BatchScheduler, DatasetError, ItemError, RunResults
from symbatcher.hooks import Checkpoint, Retry
from symbatcher.store import MemoryStore
from symbatcher.testing import (
    SimulatedBatchEngine,
    SimulatedEngine,
    SimulatedEngineError,
    use_engine,
)
from tests.expressions import (
    ConditionalExpression,
    ConditionalSlowExpression,
    DoubleNestedExpression,
    DoubleNestedExpressionSlow,
    NestedExpression,
    PostProcessErrorExpression,
    RandomErrorExpression,
    SlowExpression,
    TestExpression,
)


def items(n: int, stem: str = "item") -> list[str]:
    return [f"<{stem}-{i:05d}>" for i in range(n)]


def assert_own_answers(results: RunResults, dataset: list[str]) -> None:
    assert len(results) == len(dataset)
    for item, result in zip(dataset, results, strict=True):
        assert not isinstance(result, ItemError), result
        assert item in str(result)
        others = [d for d in dataset if d != item and d in str(result)]
        assert not others, f"answer for {item} carries {others}"


def test_simple(engine: SimulatedEngine) -> None:
    data = items(20)
    results = BatchScheduler()(expr=TestExpression, dataset=data, num_workers=5, batch_size=3)
    assert_own_answers(results, data)
    assert all("Summarize this input" in str(r) for r in results)
    assert engine.call_count == 20
    assert results.stats.items == 20 and results.stats.succeeded == 20
    assert results.stats.engine_calls == 20


@pytest.mark.parametrize("cap", [None, 2])
def test_figures_tell_a_plain_engine_s_calls_from_batched_ones(cap: int | None) -> None:
    """A plain engine gets each call on its own (its batches only admit calls under a cap),
    so the figures say so instead of a batch fill that means nothing."""
    data = items(12)
    for engine, plain in ((SimulatedEngine(), 12), (SimulatedBatchEngine(), 0)):
        with use_engine(engine):
            run = BatchScheduler(max_inflight_batches=cap)
            stats = run(expr=TestExpression, dataset=data, num_workers=4, batch_size=4).stats
        assert stats.engine_calls == 12 and stats.plain_calls == plain
        assert stats.batched is (plain == 0)
        if plain:
            assert "12 engine calls, each on its own (a plain engine)" in stats.summary()
            assert "fill" not in stats.summary()
        else:
            assert f"12 engine calls in {stats.batches} batches" in stats.calls_line()


def test_nested(engine: SimulatedEngine) -> None:
    data = items(15)
    results = BatchScheduler()(expr=NestedExpression, dataset=data, num_workers=4, batch_size=2)
    assert_own_answers(results, data)
    assert all("Elaborate on this result" in str(r) for r in results)
    assert engine.call_count == 30


def test_double_nested(engine: SimulatedEngine) -> None:
    data = items(12)
    results = BatchScheduler()(
        expr=DoubleNestedExpression, dataset=data, num_workers=6, batch_size=4
    )
    assert_own_answers(results, data)
    assert all("Combine these results" in str(r) for r in results)
    assert engine.call_count == 12 * 4
    assert results.stats.engine_calls == 48


def test_conditional(engine: SimulatedEngine) -> None:
    data = ["<s1>", "<a much longer input text>", "<s2>", "<another long input here>"]
    results = BatchScheduler()(
        expr=ConditionalExpression, dataset=data, num_workers=2, batch_size=2
    )
    assert_own_answers(results, data)
    assert "Briefly comment" in str(results[0]) and "Analyze this long" in str(results[1])
    assert "Briefly comment" in str(results[2]) and "Analyze this long" in str(results[3])


@pytest.mark.parametrize(
    "expr, calls_per_item",
    [(SlowExpression, 1), (DoubleNestedExpressionSlow, 4), (ConditionalSlowExpression, 1)],
)
def test_slow_expressions(engine: SimulatedEngine, expr: type, calls_per_item: int) -> None:
    data = items(10)
    results = BatchScheduler()(expr=expr, dataset=data, num_workers=4, batch_size=3, delay=0.002)
    assert_own_answers(results, data)
    assert engine.call_count == 10 * calls_per_item


@pytest.mark.parametrize(
    "num_workers, batch_size, n",
    [
        (1, 1, 6),
        (1, 5, 6),
        (5, 1, 10),
        (7, 3, 20),
        (4, 16, 30),
        (10, 50, 10),
        (32, 8, 100),
        (3, 3, 1),
    ],
)
def test_workers_and_batch_sizes(
    batch_engine: SimulatedBatchEngine, num_workers: int, batch_size: int, n: int
) -> None:
    data = items(n)
    results = BatchScheduler()(
        expr=NestedExpression, dataset=data, num_workers=num_workers, batch_size=batch_size
    )
    assert_own_answers(results, data)
    assert sum(batch_engine.batches) == 2 * n
    assert max(batch_engine.batches) <= min(batch_size, num_workers)
    assert results.stats.batches == len(batch_engine.batches)


def test_expression_raising_before_the_engine(engine: SimulatedEngine) -> None:
    data = ["fine one", "boom two", "fine three", "boom four", "fine five"]
    results = BatchScheduler()(
        expr=RandomErrorExpression, dataset=data, num_workers=3, batch_size=2
    )
    assert [isinstance(r, ItemError) for r in results] == [False, True, False, True, False]
    error = results[1]
    assert error.index == 1 and error.type == "ValueError" and error.message == "refusing boom two"
    assert "expressions.py" in error.traceback and 'raise ValueError(f"refusing' in error.traceback
    assert isinstance(error.exception, ValueError)
    assert results.stats.failed == 2 and results.stats.succeeded == 3
    assert results.errors == [results[1], results[3]]
    assert engine.call_count == 3


def test_engine_errors_fail_only_their_items(engine: SimulatedEngine) -> None:
    engine.fail_on = "poison"
    data = [*items(10), "<poison>", *items(10, "more")]
    results = BatchScheduler()(expr=NestedExpression, dataset=data, num_workers=8, batch_size=4)
    failed = [i for i, r in enumerate(results) if isinstance(r, ItemError)]
    assert failed == [10]
    assert results[10].type == "SimulatedEngineError"
    assert_own_answers(RunResults(results[:10], results.stats), data[:10])


def test_post_processing_error(engine: SimulatedEngine) -> None:
    data = ["early", "late", "early again"]
    results = BatchScheduler()(expr=PostProcessErrorExpression, dataset=data, num_workers=3)
    assert results[1].type == "KeyError" and not isinstance(results[0], ItemError)
    assert engine.call_count == 3


def test_whole_batch_failure_raises_in_each_member(batch_engine: SimulatedBatchEngine) -> None:
    batch_engine.fail_batch_on = "<poison>"
    data = [*items(30), "<poison>", *items(30, "more")]
    results = BatchScheduler()(expr=TestExpression, dataset=data, num_workers=8, batch_size=4)
    failed = [r for r in results if isinstance(r, ItemError)]
    assert isinstance(results[30], ItemError)
    assert 1 <= len(failed) <= 4  # the poisoned batch only
    assert all(f.type == "SimulatedEngineError" and "of batch" in f.message for f in failed)
    assert len({id(f.exception) for f in failed}) == len(failed)  # each worker raised its own
    assert results.stats.succeeded == len(data) - len(failed)


def test_whole_batch_failure_reaches_symai_fallback(batch_engine: SimulatedBatchEngine) -> None:
    batch_engine.fail_batch_every = 1  # every batch fails

    class WithFallback(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            @core.query(context="Summarize this input")
            def ask(_: Any, error: Exception | None = None, stack_trace: str = "") -> str:
                return f"fallback for {input} after {type(error).__name__}"

            return ask(self)

    data = items(9)
    results = BatchScheduler()(expr=WithFallback, dataset=data, num_workers=3, batch_size=3)
    # symai's fallback path returns {"data": ..., "error": ...}
    assert [r["data"] for r in results] == [
        f"fallback for {i} after SimulatedEngineError" for i in data
    ]


def test_kwargs_are_forwarded_to_each_call_and_constructor() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(SimulatedEngine):
        def forward(self, argument: Any) -> Any:
            seen.append(dict(argument.kwargs))
            return super().forward(argument)

    class Tagged(Expression):
        def __init__(self, tag: str = "none", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tag = tag

        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(f"{self.tag}:{input}").query("Summarize this input", **kwargs)

    with use_engine(Recording()):
        results = BatchScheduler()(
            expr=Tagged, dataset=["a", "b"], num_workers=2, tag="T7", temperature=0.25
        )
    assert all("T7:" in str(r) for r in results)
    assert len(seen) == 2 and all(k.get("temperature") == 0.25 for k in seen)
    assert all(k.get("tag") == "T7" for k in seen)


def test_expression_instance_is_shared(engine: SimulatedEngine) -> None:
    data = items(25)
    shared = NestedExpression()
    results = BatchScheduler()(expr=shared, dataset=data, num_workers=5, batch_size=5)
    assert_own_answers(results, data)
    assert shared.metadata.root_link is None  # the per-call trail does not pile up
    assert not shared.test_expression.metadata.detach  # the user's instance is as it was


def test_empty_dataset(engine: SimulatedEngine) -> None:
    results = BatchScheduler()(expr=TestExpression, dataset=[], num_workers=4)
    assert list(results) == [] and len(results) == 0
    assert results.stats.items == 0 and results.stats.batches == 0
    assert engine.call_count == 0


def test_generator_dataset_keeps_order(engine: SimulatedEngine) -> None:
    def gen() -> Iterator[str]:
        yield from items(40)

    results = BatchScheduler()(expr=TestExpression, dataset=gen(), num_workers=9, batch_size=4)
    assert_own_answers(results, items(40))


def test_fail_fast_raises_first_error_and_stops(engine: SimulatedEngine) -> None:
    data = ["fine"] * 3 + ["boom"] + ["fine"] * 200
    scheduler = BatchScheduler(error_handling="fail_fast")
    with pytest.raises(ValueError, match="refusing boom") as info:
        scheduler(expr=RandomErrorExpression, dataset=data, num_workers=2, batch_size=1)
    assert any("item 3" in note for note in info.value.__notes__)
    assert scheduler.stats.items < len(data)  # the rest never started
    assert engine.call_count < 200


def test_dataset_error_keeps_finished_items(engine: SimulatedEngine) -> None:
    def flaky() -> Iterator[str]:
        yield from items(7)
        raise OSError("disk went away")

    with pytest.raises(DatasetError, match="disk went away") as info:
        BatchScheduler()(expr=TestExpression, dataset=flaky(), num_workers=3)
    partial = info.value.results  # type: ignore[attr-defined]
    assert_own_answers(partial, items(7))
    assert "at item 7" in str(info.value)


def test_scheduler_is_an_expression_in_a_pipeline(engine: SimulatedEngine) -> None:
    class Pipeline(Expression):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.batch = BatchScheduler()

        def forward(self, input: Any, **kwargs: Any) -> Any:
            results = self.batch(expr=TestExpression, dataset=input, num_workers=3)
            return Symbol(" ; ".join(str(r) for r in results)).query("Combine these results")

    scheduler = BatchScheduler()
    assert isinstance(scheduler, Expression)
    combined = Pipeline()(items(4))
    assert all(i in str(combined) for i in items(4)) and "Combine these results" in str(combined)


class DataFrame:
    """What matters of a pandas or polars frame here: iterating it gives column names."""

    columns = ("text", "label")

    def __iter__(self) -> Any:
        return iter(self.columns)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_workers": 0}, "num_workers must be a positive integer"),
        ({"batch_size": "5"}, "batch_size must be a positive integer"),
        ({"dataset": None}, "dataset is required"),
        ({"dataset": "abc"}, "dataset must be an iterable of items"),
        ({"dataset": 5}, "dataset must be an iterable"),
        ({"dataset": {"a": "x"}}, r"dataset is a dict, whose iteration gives its keys: pass"),
        ({"dataset": DataFrame()}, r"its column names: pass its rows, df.to_dict\('records'\)"),
        ({"expr": 42}, "expr must be an Expression class or instance"),
    ],
)
def test_bad_arguments_name_the_problem(
    engine: SimulatedEngine, kwargs: dict[str, Any], message: str
) -> None:
    call: dict[str, Any] = {"expr": TestExpression, "dataset": ["x"], "num_workers": 2}
    call.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        BatchScheduler()(**call)
    assert engine.call_count == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"engines": []}, "engines must be non-empty"),
        ({"linger": -1}, "linger must be >= 0"),
        ({"max_inflight_batches": 0}, "max_inflight_batches must be a positive integer"),
        ({"error_handling": "ignore"}, "error_handling must be 'continue' or 'fail_fast'"),
    ],
)
def test_bad_options_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchScheduler(**kwargs)


def test_unbuildable_expression_class_fails_before_any_thread(engine: SimulatedEngine) -> None:
    class Broken(Expression):
        def __init__(self, **kwargs: Any) -> None:
            raise RuntimeError("no model file")

    with pytest.raises(TypeError, match=r"could not instantiate .*Broken.*no model file"):
        BatchScheduler()(expr=Broken, dataset=["x"], num_workers=2)


def test_engine_errors_are_not_hidden_in_unrelated_items(engine: SimulatedEngine) -> None:
    engine.fail_every = 3
    results = BatchScheduler()(expr=TestExpression, dataset=items(30), num_workers=1, batch_size=1)
    assert [isinstance(r, ItemError) for r in results] == [(i + 1) % 3 == 0 for i in range(30)]
    assert all(isinstance(r.exception, SimulatedEngineError) for r in results.errors)


_frames_seen: list[tuple[str, list[str]]] = []


class FrameProbe(Expression):  # type: ignore[misc]
    """Records, at each item, the locals of symbatcher's own frames under the expression."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_code.co_filename.replace("\\", "/")
            if name.endswith(("/symbatcher/run.py", "/symbatcher/hooks/chain.py")):
                _frames_seen.append((frame.f_code.co_name, sorted(frame.f_locals)))
            frame = frame.f_back
        return Symbol(input).query("Summarize")


@pytest.mark.parametrize("with_hooks", [False, True])
def test_frames_under_the_expression_hold_one_local_each(
    engine: SimulatedEngine, with_hooks: bool
) -> None:
    """symai walks every frame above each query and type-checks each local (looking for a
    DynamicEngine), so the run's own frames there carry only ``self``."""
    _frames_seen.clear()
    hooks = [Checkpoint(MemoryStore()), Retry(attempts=2)] if with_hooks else []
    results = BatchScheduler(hooks=hooks)(expr=FrameProbe, dataset=items(6), num_workers=3)
    assert results.ok
    functions = {function for function, _ in _frames_seen}
    assert "__call__" in functions  # the worker's loop was seen
    if with_hooks:
        assert "_run_hooked" in functions  # and the hooked item, and the hook wrapper
    for function, names in _frames_seen:
        assert names == ["self"], (function, names)
