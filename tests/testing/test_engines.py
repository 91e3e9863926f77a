"""The simulated engines themselves: answers, latency settings, failures, tracking."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from symai import Symbol
from symai.functional import EngineRepository

from symbatcher.testing import (
    SimulatedBatchEngine,
    SimulatedEngine,
    SimulatedEngineError,
    use_engine,
)
from tests.cycles import left_in_cycles


def test_answer_contains_the_prompt_and_usage() -> None:
    engine = SimulatedEngine()
    outputs, metadata = engine.answer("hello")
    assert outputs == ["sim(hello)"]
    assert metadata["usage"]["total_tokens"] == (
        metadata["usage"]["prompt_tokens"] + metadata["usage"]["completion_tokens"]
    )


def test_plain_engine_through_symai_tracks_calls() -> None:
    with use_engine(SimulatedEngine()) as engine:
        answer = Symbol("<t1>").query("Summarize this input")
    assert "<t1>" in str(answer) and engine.call_count == 1 and "<t1>" in engine.calls[0]


def test_fail_every_and_fail_on() -> None:
    with use_engine(SimulatedEngine(fail_every=2, fail_on="<x>")) as engine:
        Symbol("<a>").query("q")
        with pytest.raises(SimulatedEngineError, match="call 2"):
            Symbol("<b>").query("q")
        with pytest.raises(SimulatedEngineError, match="prompt matched"):
            Symbol("<x>").query("q")
    assert engine.call_count == 3


def test_latency_settings_are_deterministic_per_seed() -> None:
    a = [SimulatedEngine(latency=(0.0, 1.0), seed=4)._delay() for _ in range(1)]
    b = [SimulatedEngine(latency=(0.0, 1.0), seed=4)._delay() for _ in range(1)]
    assert a == b and 0.0 <= a[0] <= 1.0
    assert SimulatedEngine(latency=lambda rng: 0.25)._delay() == 0.25
    assert SimulatedEngine(latency=0.5)._delay() == 0.5


def test_batch_engine_failures_per_call_and_per_batch() -> None:
    from types import SimpleNamespace

    def arg(text: str) -> SimpleNamespace:
        return SimpleNamespace(prop=SimpleNamespace(prepared_input=text))

    engine = SimulatedBatchEngine(fail_on="<bad>", fail_batch_every=2)
    first = engine.forward_batch([arg("<ok>"), arg("<bad>")])
    assert first[0] == engine.answer("<ok>") and isinstance(first[1], SimulatedEngineError)
    with pytest.raises(SimulatedEngineError, match="batch 2"):
        engine.forward_batch([arg("<ok>")])
    assert engine.batches == [2, 1] and engine.call_count == 3


def test_use_engine_restores_what_was_registered() -> None:
    outer, inner = SimulatedEngine(), SimulatedEngine()
    with use_engine(outer):
        with use_engine(inner):
            assert EngineRepository()._engines["neurosymbolic"] is inner
        assert EngineRepository()._engines["neurosymbolic"] is outer
    with use_engine(outer, name="sb-test-name"):
        assert EngineRepository()._engines["sb-test-name"] is outer
    assert "sb-test-name" not in EngineRepository()._engines


class _ServingWatch(SimulatedBatchEngine):
    """Counts the batches inside their latency at once (past the engine's slots)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.serving = 0
        self.most_serving = 0
        self._watch = threading.Lock()

    def _wait(self) -> None:
        with self._watch:
            self.serving += 1
            self.most_serving = max(self.most_serving, self.serving)
        try:
            super()._wait()
        finally:
            with self._watch:
                self.serving -= 1


def test_a_batch_engine_with_a_capacity_serves_that_many_at_once_and_declares_it() -> None:
    from types import SimpleNamespace

    engine = _ServingWatch(latency=0.03, capacity=1)
    assert engine.max_concurrent_batches == 1
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=engine.forward_batch,
            args=([SimpleNamespace(prop=SimpleNamespace(prepared_input=f"<{i}>"))],),
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 3 * 0.03  # one after another
    assert engine.most_serving == 1 and engine.batches == [1, 1, 1]
    assert SimulatedBatchEngine().max_concurrent_batches is None
    with pytest.raises(ValueError, match="capacity must be a positive integer, got 0"):
        SimulatedBatchEngine(capacity=0)


def test_a_batch_with_failing_calls_leaves_no_reference_cycles() -> None:
    """A failing call's error is returned in its slot; raised and caught inside the batch,
    its traceback would keep the batch's frame, and the frame the list holding the error."""
    from types import SimpleNamespace

    engine = SimulatedBatchEngine(fail_on="<bad>")
    batch = [SimpleNamespace(prop=SimpleNamespace(prepared_input=p)) for p in ("<ok>", "<bad>")]

    def run() -> None:
        for _ in range(100):
            outcomes = engine.forward_batch(batch)
            assert isinstance(outcomes[1], SimulatedEngineError)
        del outcomes

    assert left_in_cycles(run) < 10
