"""The engine binding: routed during runs, transparent otherwise, always undone."""

from __future__ import annotations

import _thread
import threading
from typing import Any

import pytest
from symai import Expression, Symbol
from symai.functional import EngineRepository

from symbatcher import BatchScheduler, EngineBinding, EngineNotAvailableError, ItemError
from symbatcher.testing import SimulatedEngine, use_engine
from tests.expressions import RandomErrorExpression, TestExpression


def registered() -> Any:
    return EngineRepository()._engines.get("neurosymbolic")


def test_binding_is_in_place_during_a_run_and_gone_after(engine: SimulatedEngine) -> None:
    seen: list[Any] = []

    class Peek(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            seen.append(registered())
            return Symbol(input).query("Summarize this input")

    BatchScheduler()(expr=Peek, dataset=["a", "b"], num_workers=2)
    assert all(isinstance(b, EngineBinding) and b.engine is engine for b in seen)
    assert registered() is engine


def test_restored_after_fail_fast_exception(engine: SimulatedEngine) -> None:
    with pytest.raises(ValueError):
        BatchScheduler(error_handling="fail_fast")(
            expr=RandomErrorExpression, dataset=["ok", "boom"], num_workers=2
        )
    assert registered() is engine


def test_restored_after_keyboard_interrupt() -> None:
    class CtrlC(SimulatedEngine):
        def forward(self, argument: Any) -> Any:
            if self.call_count == 3:
                _thread.interrupt_main()  # what Ctrl-C does to the main thread
            return super().forward(argument)

    with use_engine(CtrlC()) as eng:
        with pytest.raises(KeyboardInterrupt):
            BatchScheduler()(
                expr=TestExpression, dataset=[f"i{i}" for i in range(500)], num_workers=4
            )
        assert registered() is eng
        assert eng.call_count < 500


def test_prepare_and_preview_reach_the_real_engine(engine: SimulatedEngine) -> None:
    class Preview(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(input).query("Summarize this input", preview=True)

    results = BatchScheduler()(expr=Preview, dataset=["<p1>"], num_workers=1)
    assert "<p1>" in str(results[0]) and "Summarize this input" in str(results[0])
    assert engine.call_count == 0  # a preview never reaches forward()


def test_binding_forwards_attribute_reads_and_writes(engine: SimulatedEngine) -> None:
    binding = EngineBinding("neurosymbolic", engine)
    assert binding.model == "simulated" and binding.id() == "neurosymbolic"
    binding.verbose = True
    assert engine.verbose is True


def test_calls_from_threads_outside_the_run_go_straight_to_the_engine(
    engine: SimulatedEngine,
) -> None:
    inside = threading.Event()
    resume = threading.Event()

    class Holding(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            inside.set()
            assert resume.wait(timeout=60)
            return Symbol(input).query("Summarize this input")

    scheduler = BatchScheduler()
    outcome: list[Any] = []
    runner = threading.Thread(
        target=lambda: outcome.append(scheduler(expr=Holding, dataset=["<held>"], num_workers=1))
    )
    runner.start()
    assert inside.wait(timeout=60)
    assert isinstance(registered(), EngineBinding)
    direct = Symbol("<outside>").query("Summarize this input")  # main thread: not in the run
    resume.set()
    runner.join()
    assert "<outside>" in str(direct)
    assert outcome[0].stats.engine_calls == 1 and engine.call_count == 2
    assert registered() is engine


def test_two_schedulers_at_once_do_not_mix(engine: SimulatedEngine) -> None:
    both_running = threading.Barrier(2, timeout=60)

    class Meet(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            if input.endswith("-00>"):
                both_running.wait()
            return Symbol(input).query("Summarize this input")

    outputs: dict[str, Any] = {}

    def run(tag: str) -> None:
        data = [f"<{tag}-{i:02d}>" for i in range(30)]
        outputs[tag] = (
            data,
            BatchScheduler()(expr=Meet, dataset=data, num_workers=5, batch_size=3),
        )

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for data, results in outputs.values():
        assert [d in str(r) for d, r in zip(data, results, strict=True)] == [True] * 30
        assert results.stats.engine_calls == 30
    assert registered() is engine


def test_scheduler_inside_another_schedulers_expression(engine: SimulatedEngine) -> None:
    class FanOut(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            parts = [f"{input}/a", f"{input}/b"]
            inner = BatchScheduler()(expr=TestExpression, dataset=parts, num_workers=2)
            assert inner.stats.engine_calls == 2
            return Symbol(" + ".join(map(str, inner))).query("Combine these results")

    data = [f"<o{i}>" for i in range(6)]
    results = BatchScheduler()(expr=FanOut, dataset=data, num_workers=3, batch_size=2)
    for item, result in zip(data, results, strict=True):
        assert not isinstance(result, ItemError), result
        assert f"{item}/a" in str(result) and f"{item}/b" in str(result)
    assert results.stats.engine_calls == 6
    assert engine.call_count == 18
    assert registered() is engine


def test_unknown_engine_is_named_and_nothing_stays_bound(engine: SimulatedEngine) -> None:
    scheduler = BatchScheduler(engines=("neurosymbolic", "no_such_engine"))
    with pytest.raises(EngineNotAvailableError, match="no_such_engine"):
        scheduler(expr=TestExpression, dataset=["x"], num_workers=1)
    assert registered() is engine
    assert engine.call_count == 0


def test_engine_replaced_during_run_is_left_alone(engine: SimulatedEngine) -> None:
    replacement = SimulatedEngine()

    class Replace(Expression):
        def forward(self, input: Any, **kwargs: Any) -> Any:
            EngineRepository.register("neurosymbolic", replacement, allow_engine_override=True)
            return input

    BatchScheduler()(expr=Replace, dataset=["x"], num_workers=1)
    assert registered() is replacement


def test_one_engine_under_two_names_keeps_one_set_of_slots() -> None:
    """Bound under two names, an engine that serves two batches at once must not be sent
    four: the bindings share its executor (and its slots), while they both stand, and
    again after one name was let go and bound anew."""
    from symbatcher.binding import bound_engines
    from symbatcher.testing import SimulatedBatchEngine

    engine = SimulatedBatchEngine(capacity=2)
    other = SimulatedBatchEngine(capacity=2)
    with use_engine(engine), use_engine(engine, "alias"), use_engine(other, "elsewhere"):
        with bound_engines(("neurosymbolic", "alias", "elsewhere")) as bindings:
            slots = bindings["neurosymbolic"].executor.slots
            assert slots is not None and slots.capacity == 2
            assert bindings["alias"].executor.slots is slots
            assert bindings["elsewhere"].executor.slots is not slots
            with bound_engines(("alias",)) as again:
                assert again["alias"] is bindings["alias"]
        with bound_engines(("alias",)) as alias_only, bound_engines(("neurosymbolic",)) as later:
            assert later["neurosymbolic"].executor is alias_only["alias"].executor
        assert EngineRepository()._engines.get("alias") is engine
    assert registered() is not engine
