"""A Ctrl-C is held back while a run tells its workers to stop and unbinds its engines."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from symai.functional import EngineRepository

from symbatcher import BatchScheduler, binding
from symbatcher.dispatch import Dispatcher
from symbatcher.interrupts import ctrl_c_held
from symbatcher.testing import SimulatedEngine
from tests.expressions import TestExpression


def registered() -> Any:
    return EngineRepository()._engines.get("neurosymbolic")


def test_a_ctrl_c_inside_the_block_is_raised_when_it_is_done() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_held():
        signal.raise_signal(signal.SIGINT)  # a Ctrl-C; its handler runs before this returns
        steps.append("after the Ctrl-C")
    assert steps == ["after the Ctrl-C"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_block_without_ctrl_c_changes_nothing() -> None:
    with ctrl_c_held():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_previous_handler_gets_the_held_signal() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with ctrl_c_held():
            signal.raise_signal(signal.SIGINT)
            assert seen == []
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_it_does_nothing() -> None:
    handlers: list[Any] = []

    def other() -> None:
        with ctrl_c_held():
            handlers.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert handlers == [signal.default_int_handler]


def test_a_second_ctrl_c_while_the_run_stops_still_stops_every_worker(
    engine: SimulatedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer quits early and a Ctrl-C lands as the run starts to tell its workers;
    the telling is finished first (else a worker asleep on the window or on a queued call
    would sleep for good), and the Ctrl-C is raised after it."""
    cancel = Dispatcher.cancel
    cancelled: list[Dispatcher] = []

    def cancel_hit_by_ctrl_c(self: Dispatcher, reason: BaseException | None = None) -> None:
        signal.raise_signal(signal.SIGINT)  # Python runs the handler before this returns
        cancel(self, reason)
        cancelled.append(self)

    monkeypatch.setattr(Dispatcher, "cancel", cancel_hit_by_ctrl_c)
    before = set(threading.enumerate())
    stream = BatchScheduler().imap(
        expr=TestExpression, dataset=[f"<i{i}>" for i in range(500)], num_workers=4
    )
    next(stream)
    with pytest.raises(KeyboardInterrupt):
        stream.close()
    assert len(cancelled) == 1
    workers = [t for t in threading.enumerate() if t not in before]
    for thread in workers:  # the Ctrl-C skipped the join: they end on their own
        thread.join(timeout=60)
    assert not [t.name for t in workers if t.is_alive()]
    assert registered() is engine
    assert engine.call_count < 500


def test_a_ctrl_c_while_the_engines_are_unbound_leaves_none_bound(
    engine: SimulatedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = binding._release

    def release_hit_by_ctrl_c(name: str) -> None:
        signal.raise_signal(signal.SIGINT)
        release(name)

    monkeypatch.setattr(binding, "_release", release_hit_by_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        BatchScheduler()(expr=TestExpression, dataset=["<a>", "<b>"], num_workers=2)
    assert registered() is engine
    assert engine.call_count == 2
