"""A Ctrl-C is held back while a run tells its workers to stop and unbinds its engines."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from symai import Expression, Symbol
from symai.functional import EngineRepository

from symbatcher import BatchScheduler, EngineBinding, binding
from symbatcher.dispatch import Dispatcher
from symbatcher.interrupts import ctrl_c_held, wait_until
from symbatcher.testing import SimulatedEngine, use_engine
from tests import ctrl_c
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


def test_a_ctrl_c_another_thread_took_ends_the_main_threads_wait() -> None:
    event, seen = threading.Event(), threading.Event()
    thread, missed = ctrl_c.taken_by_another_thread(signal.SIGINT, seen, "wait_until")
    try:
        with pytest.raises(KeyboardInterrupt):
            wait_until(event)
    finally:
        seen.set()
        thread.join()
    assert not missed and not event.is_set()


def test_wait_until_returns_when_set_or_at_its_timeout() -> None:
    event = threading.Event()
    assert wait_until(event, timeout=0) is False
    assert wait_until(event, timeout=0.3) is False  # longer than one look
    event.set()
    assert wait_until(event) is True


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


class _HeldFirstCall(SimulatedEngine):
    """Holds the run's first call at the engine until released (a slow LLM call)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def forward(self, argument: Any) -> tuple[list[str], dict[str, Any]]:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(timeout=60)
        return super().forward(argument)


class _TwoSteps(Expression):
    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = Symbol(input).query("step one")
        return Symbol(str(first)).query("step two")


def _cancel_tells(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once the run has told its workers to stop."""
    cancel = Dispatcher.cancel
    stopped = threading.Event()

    def cancel_and_tell(self: Dispatcher, reason: BaseException | None = None) -> None:
        cancel(self, reason)
        stopped.set()

    monkeypatch.setattr(Dispatcher, "cancel", cancel_and_tell)
    return stopped


def _run_one_item_while(press: Callable[[], None]) -> threading.Thread:
    """Run the two steps over one item while ``press`` presses Ctrl-C from a thread of its
    own (returned, to join); the run must end in KeyboardInterrupt."""
    presser = threading.Thread(target=press)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        BatchScheduler()(expr=_TwoSteps, dataset=["<only>"], num_workers=1)
    return presser


def test_a_run_stops_on_a_ctrl_c_another_thread_took(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's worker takes the SIGINT while its call is out: the run must stop (tell its
    workers, wait for the call, send no further one) as for a Ctrl-C the main thread took."""
    stopped = _cancel_tells(monkeypatch)
    with use_engine(_HeldFirstCall()) as engine:
        taker: list[tuple[threading.Thread, list[str]]] = []

        def take_ctrl_c_then_answer() -> None:
            engine.entered.wait(timeout=60)
            taker.append(
                ctrl_c.taken_by_another_thread(signal.SIGINT, stopped, "collect", not_in="start")
            )
            stopped.wait(timeout=60)
            engine.release.set()

        _run_one_item_while(take_ctrl_c_then_answer).join()
        thread, missed = taker[0]
        thread.join()
        assert not missed
        assert engine.call_count == 1  # "step two" was refused
        assert registered() is engine


def test_ctrl_c_waits_for_the_call_out_and_sends_no_further_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One Ctrl-C while the run waits for its workers (on Python 3.11 a Thread.join
    interrupted so marks the thread stopped, and a later join would not wait)."""
    stopped = _cancel_tells(monkeypatch)
    returned = threading.Event()
    before = set(threading.enumerate())

    def press_ctrl_c_then_answer() -> None:
        engine.entered.wait(timeout=60)
        ctrl_c.main_thread_waits_in("collect", not_in="start")
        ctrl_c.press()
        stopped.wait(timeout=60)
        # The run must wait for the call out. If it returns instead, it does so at once:
        # give it half a second to show that (a slow machine can only hide it, not fake it).
        returned.wait(timeout=0.5)
        engine.release.set()  # the call comes back

    with use_engine(_HeldFirstCall()) as engine:
        presser = _run_one_item_while(press_ctrl_c_then_answer)
        returned.set()
        assert engine.release.is_set(), "the run returned while its call was out"
        presser.join()
        assert not [t.name for t in threading.enumerate() if t not in before]
        assert engine.call_count == 1  # "step two" was refused
        assert registered() is engine


def test_an_item_cut_short_by_ctrl_c_is_not_failed_and_a_resume_runs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its second call was refused because the run stopped: that is no failure of the item
    (recorded failed, a resume would skip it, and only a retry would run it again)."""
    from symbatcher.hooks import Checkpoint
    from symbatcher.store import SQLiteStore

    stopped = _cancel_tells(monkeypatch)

    def press_ctrl_c_then_answer() -> None:
        engine.entered.wait(timeout=60)
        ctrl_c.main_thread_waits_in("collect", not_in="start")
        ctrl_c.press()
        stopped.wait(timeout=60)
        engine.release.set()

    with use_engine(_HeldFirstCall()) as engine:
        presser = threading.Thread(target=press_ctrl_c_then_answer)
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])(
                expr=_TwoSteps, dataset=["<only>"], num_workers=1
            )
        presser.join()
        assert engine.call_count == 1  # step two was refused
    [record] = SQLiteStore(tmp_path / "run").items()
    assert record.status == "running" and record.error_type is None
    with use_engine(SimulatedEngine()) as again:
        [answer] = BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])(
            expr=_TwoSteps, dataset=["<only>"]
        )
    assert again.call_count == 2 and "step two" in str(answer)


def test_workers_left_by_a_second_ctrl_c_send_no_further_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while a call is out, and again while the run waits for it: the run returns at
    once, the call's worker is left to finish, and its item's next call must not reach the
    engine (it would be billed and thrown away). The last worker out unbinds."""
    stopped = _cancel_tells(monkeypatch)
    before = set(threading.enumerate())

    def press_ctrl_c_twice() -> None:
        engine.entered.wait(timeout=60)
        ctrl_c.main_thread_waits_in("collect", not_in="start")
        ctrl_c.press()  # the run starts to close and waits for the call
        stopped.wait(timeout=60)
        ctrl_c.main_thread_waits_in("close")
        ctrl_c.press()  # stop waiting

    with use_engine(_HeldFirstCall()) as engine:
        _run_one_item_while(press_ctrl_c_twice).join()
        workers = [t for t in threading.enumerate() if t not in before]
        assert workers, "the worker should still wait for its call"
        assert isinstance(registered(), EngineBinding)  # still refusing its calls
        engine.release.set()
        for thread in workers:
            thread.join(timeout=60)
        assert not [t.name for t in workers if t.is_alive()]
        assert engine.call_count == 1  # "step two" never reached the engine
        assert registered() is engine  # the last worker out unbound


class _CtrlCAfterBinding:
    """symai's EngineRepository, with a Ctrl-C landing right after a binding is registered
    and before the run has recorded it for undoing."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository
        self.get = repository.get

    def register(self, name: str, engine: Any, **kwargs: Any) -> None:
        self._repository.register(name, engine, **kwargs)
        if isinstance(engine, EngineBinding):
            signal.raise_signal(signal.SIGINT)  # its handler runs before this returns

    def __call__(self) -> Any:
        return self._repository()


def test_a_ctrl_c_while_the_engines_are_bound_leaves_none_bound(
    engine: SimulatedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = binding._repository()
    monkeypatch.setattr(binding, "_repository", lambda: _CtrlCAfterBinding(repository))
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        BatchScheduler()(expr=TestExpression, dataset=["<a>", "<b>"], num_workers=2)
    assert registered() is engine
    assert not binding._bound
    assert not [t.name for t in threading.enumerate() if t not in before]
    assert engine.call_count == 0


def test_a_ctrl_c_while_the_workers_start_leaves_none_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C right after the first worker started, before the run recorded it: the run
    must still wait for that worker, whose call is out at the engine, before it unbinds
    (else the worker runs on, unjoined, and its item's next call finds the engine unbound)."""
    started: list[threading.Thread] = []

    class CtrlCAfterFirstWorker(threading.Thread):
        def start(self) -> None:
            super().start()
            if self.name.endswith("-worker0"):
                started.append(self)
                engine.entered.wait(timeout=60)  # its call is out
                signal.raise_signal(signal.SIGINT)

    cancel = Dispatcher.cancel

    def cancel_then_answer(self: Dispatcher, reason: BaseException | None = None) -> None:
        cancel(self, reason)
        engine.release.set()  # the call comes back once the run has told its workers

    monkeypatch.setattr(threading, "Thread", CtrlCAfterFirstWorker)
    monkeypatch.setattr(Dispatcher, "cancel", cancel_then_answer)
    with use_engine(_HeldFirstCall()) as engine:
        with pytest.raises(KeyboardInterrupt):
            BatchScheduler()(expr=_TwoSteps, dataset=["<only>"], num_workers=2)
        assert started
        assert not [t.name for t in started if t.is_alive()]
        assert engine.call_count == 1  # "step two" was refused
        assert registered() is engine
