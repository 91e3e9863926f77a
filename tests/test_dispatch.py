"""Release rules of the Dispatcher, driven directly by threads (no symai in the way)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from symbatcher import dispatch
from symbatcher.batch_slots import BatchSlots
from symbatcher.dispatch import Dispatcher
from symbatcher.errors import RunCancelledError
from symbatcher.executors import Answer, Outcome
from tests.cycles import left_in_cycles


class GatedListEngine:
    """A list-taking executor whose batches wait for the test to open a gate."""

    caller_runs = False
    slots: BatchSlots | None = None

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.started = threading.Semaphore(0)

    def call_one(self, argument: Any) -> Answer:
        raise AssertionError("dispatch must use call_batch")

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        with self.lock:
            self.batches.append(list(arguments))
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        self.started.release()
        self.gate.wait()
        with self.lock:
            self.inflight -= 1
        return [([f"ans({a})"], {}) for a in arguments]


def run_workers(
    dispatcher: Dispatcher, executor: Any, args: list[Any]
) -> tuple[list[Any], list[threading.Thread]]:
    """One worker per argument, all marked busy before any of them calls."""
    answers: list[Any] = [None] * len(args)
    for _ in args:
        dispatcher.worker_busy()

    def worker(i: int) -> None:
        try:
            answers[i] = dispatcher.submit("e", executor, args[i])
        except BaseException as exc:
            answers[i] = exc
        finally:
            dispatcher.worker_idle()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    return answers, threads


def run_to_the_end(threads: list[threading.Thread]) -> None:
    """Start the threads and wait for them all to finish (a hang fails, not blocks)."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()


def test_full_batches_go_at_once_without_linger() -> None:
    # a linger of an hour: only the size rule and the all-blocked rule can release
    dispatcher = Dispatcher(batch_size=4, linger=3600, linger_fraction=None)
    engine = GatedListEngine()
    answers, threads = run_workers(dispatcher, engine, list(range(8)))
    for t in threads:
        t.join()
    assert [len(b) for b in engine.batches] == [4, 4]
    assert answers == [([f"ans({i})"], {}) for i in range(8)]
    assert dispatcher.engine_calls == 8


def test_all_workers_blocked_releases_a_partial_batch() -> None:
    dispatcher = Dispatcher(batch_size=100, linger=3600, linger_fraction=None)
    engine = GatedListEngine()
    answers, threads = run_workers(dispatcher, engine, ["a", "b", "c"])
    for t in threads:
        t.join()
    assert sum(len(b) for b in engine.batches) == 3
    assert answers == [(["ans(a)"], {}), (["ans(b)"], {}), (["ans(c)"], {})]


def test_linger_releases_while_another_worker_is_busy_elsewhere() -> None:
    dispatcher = Dispatcher(batch_size=100, linger=0.01)
    engine = GatedListEngine()
    dispatcher.worker_busy()  # a worker busy with client-side work: it will not call
    answers, threads = run_workers(dispatcher, engine, ["x"])
    threads[0].join()  # only the linger deadline can release "x"
    dispatcher.worker_idle()
    assert answers == [(["ans(x)"], {})]
    assert engine.batches == [["x"]]


def test_max_inflight_batches_is_respected() -> None:
    dispatcher = Dispatcher(batch_size=2, linger=0, max_inflight_batches=1)
    engine = GatedListEngine(gated=True)
    answers, threads = run_workers(dispatcher, engine, list(range(6)))
    engine.started.acquire()  # the first batch is at the engine
    assert len(engine.batches) == 1
    engine.gate.set()
    for t in threads:
        t.join()
    assert engine.max_inflight == 1
    assert sum(len(b) for b in engine.batches) == 6
    assert all(isinstance(a, tuple) for a in answers)


class LingerWatch(Dispatcher):
    """Tells the test when a call was queued, and when one lingered out but the in-flight
    cap held it back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued = threading.Semaphore(0)
        self.held = threading.Event()

    def _op_enqueue(self, call: Any) -> None:
        super()._op_enqueue(call)
        self.queued.release()

    def _op_expire(self, call: Any) -> None:
        super()._op_expire(call)
        if call.role == dispatch._WAIT:  # still queued after its deadline
            self.held.set()


def test_under_a_cap_the_linger_is_not_cut_to_a_share_of_the_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uncapped, a call lingers at most ``linger_fraction`` of the engine's latency; under
    a cap a batch holds a scarce slot for a whole round trip, so it may fill for ``linger``.
    """
    clock = [1000.0]
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    dispatcher = LingerWatch(
        batch_size=10, linger=0.01, linger_fraction=0.01, max_inflight_batches=2
    )
    engine = GatedListEngine()
    dispatcher.worker_busy()  # a worker that never calls: the batch cannot know it is complete
    dispatcher.worker_busy()
    first = threading.Thread(target=dispatcher.submit, args=("e", engine, "a"))
    first.start()
    dispatcher.queued.acquire()
    clock[0] += 1  # "a" lingers out; its batch comes back at once: latency 0 by this clock
    first.join(timeout=30)
    second = threading.Thread(target=dispatcher.submit, args=("e", engine, "b"))
    second.start()
    dispatcher.queued.acquire()  # "b" is queued, and every release its arrival allows ran
    assert dispatcher.batches == 1, "a zero share of the latency released it at once"
    clock[0] += 1
    second.join(timeout=30)
    assert not first.is_alive() and not second.is_alive()
    assert engine.batches == [["a"], ["b"]]


def test_a_freed_slot_lets_a_call_that_lingered_out_wait_for_company(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a cap, a call whose linger ran out while the cap held it back lingers once
    more when a slot comes free: the calls that follow fill its batch, rather than it
    taking the slot alone for a whole round trip. The clock is the test's: it moves only
    when the test says, so no deadline passes by accident on a slow machine."""
    clock = [1000.0]
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    dispatcher = LingerWatch(batch_size=4, linger=0.01, max_inflight_batches=1)
    engine = GatedListEngine(gated=True)
    answers: dict[str, Any] = {}

    def worker(argument: str) -> None:
        answers[argument] = dispatcher.submit("e", engine, argument)
        dispatcher.worker_idle()

    def start(argument: str) -> threading.Thread:
        thread = threading.Thread(target=worker, args=(argument,))
        thread.start()
        return thread

    for _ in "abcde":
        dispatcher.worker_busy()
    first = start("a")
    dispatcher.queued.acquire()
    clock[0] += 1  # "a" lingers out and goes alone, the cap is full
    assert engine.started.acquire(timeout=30)
    second = start("b")
    dispatcher.queued.acquire()
    clock[0] += 1  # "b" lingers out too, but the cap holds it back
    assert dispatcher.held.wait(timeout=30)
    engine.gate.set()  # "a" comes back: a slot is free
    first.join(timeout=30)
    rest = [second] + [start(argument) for argument in "cde"]
    for thread in rest:
        thread.join(timeout=30)
    alive = [t for t in [first, *rest] if t.is_alive()]
    dispatcher.cancel()
    assert not alive
    assert engine.batches == [["a"], ["b", "c", "d", "e"]]
    assert answers == {x: ([f"ans({x})"], {}) for x in "abcde"}


class PlainGates:
    """A plain engine (each call in its caller's thread) whose calls each wait for the test."""

    caller_runs = True
    slots: BatchSlots | None = None

    def __init__(self, order: list[Any]) -> None:
        self.order = order
        self.gates: dict[str, threading.Event] = {}
        self.started = threading.Semaphore(0)

    def call_one(self, argument: str) -> Answer:
        gate = self.gates.setdefault(argument, threading.Event())
        self.order.append(argument)
        self.started.release()
        assert gate.wait(timeout=30)
        return ([f"ans({argument})"], {})

    def open(self, argument: str) -> None:
        self.gates.setdefault(argument, threading.Event()).set()


def test_a_call_lingers_again_once_so_plain_calls_cannot_keep_taking_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a cap shared with a plain engine, whose calls go whenever a slot is free: a
    list call that lingered out lingers once more at a freed slot, not at every one."""
    clock = [1000.0]
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    dispatcher = LingerWatch(batch_size=4, linger=0.01, max_inflight_batches=1)
    order: list[Any] = []
    listed = GatedListEngine(gated=True)
    plain = PlainGates(order)
    call_batch = listed.call_batch

    def recorded(arguments: Sequence[Any]) -> list[Outcome]:
        order.append(list(arguments))
        return call_batch(arguments)

    listed.call_batch = recorded  # type: ignore[method-assign]
    for _ in range(8):
        dispatcher.worker_busy()  # more workers than calls: no batch knows it is complete

    def start(lane: str, executor: Any, argument: str) -> threading.Thread:
        thread = threading.Thread(target=dispatcher.submit, args=(lane, executor, argument))
        thread.start()
        dispatcher.queued.acquire()
        return thread

    threads = [start("list", listed, "a")]
    clock[0] += 1  # "a" lingers out and takes the one slot
    assert listed.started.acquire(timeout=30)
    threads.append(start("list", listed, "b"))
    clock[0] += 1  # "b" lingers out; the cap holds it back
    assert dispatcher.held.wait(timeout=30)
    threads.append(start("plain", plain, "p1"))
    listed.gate.set()  # "a" comes back: "b" lingers again, so "p1" takes the slot
    assert plain.started.acquire(timeout=30)
    dispatcher.held.clear()
    clock[0] += 1  # "b" lingers out a second time; the cap holds it back again
    assert dispatcher.held.wait(timeout=30)
    threads.append(start("plain", plain, "p2"))
    plain.open("p1")  # a slot is free: now it is "b"'s, not "p2"'s
    assert plain.started.acquire(timeout=30)  # "p2" got a slot after "b"'s batch
    plain.open("p2")
    for thread in threads:
        thread.join(timeout=30)
    alive = [t for t in threads if t.is_alive()]
    dispatcher.cancel()
    for name in ("p1", "p2"):
        plain.open(name)
    assert not alive
    assert order == [["a"], "p1", ["b"], "p2"]


def test_several_batches_in_flight_when_uncapped() -> None:
    dispatcher = Dispatcher(batch_size=2, linger=3600, linger_fraction=None)
    engine = GatedListEngine(gated=True)
    answers, threads = run_workers(dispatcher, engine, list(range(6)))
    for _ in range(3):
        engine.started.acquire()  # three batches at the engine at once
    assert engine.inflight == 3
    assert [len(b) for b in engine.batches] == [2, 2, 2]
    engine.gate.set()
    for t in threads:
        t.join()
    assert all(isinstance(a, tuple) for a in answers)


class ObservedDispatcher(Dispatcher):
    """Signals when two calls sit in the queue (checked under the dispatcher's lock)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.two_queued = threading.Event()
        super().__init__(*args, **kwargs)

    def _release(self) -> None:
        super()._release()
        if sum(len(lane.waiting) for lane in self._lanes.values()) == 2:
            self.two_queued.set()


def test_cancel_fails_waiting_calls_and_later_ones() -> None:
    dispatcher = ObservedDispatcher(batch_size=10, linger=3600, linger_fraction=None)
    engine = GatedListEngine()
    dispatcher.worker_busy()  # keeps the all-blocked rule from firing
    answers, threads = run_workers(dispatcher, engine, ["a", "b"])
    assert dispatcher.two_queued.wait(timeout=30)
    dispatcher.cancel()
    for t in threads:
        t.join()
    assert all(isinstance(a, RunCancelledError) for a in answers)
    with pytest.raises(RunCancelledError):
        dispatcher.submit("e", engine, "late")
    dispatcher.worker_idle()
    assert engine.batches == []


def test_whole_batch_exception_reaches_every_member_as_its_own_object() -> None:
    class Failing(GatedListEngine):
        def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
            raise ConnectionError("provider down")

    dispatcher = Dispatcher(batch_size=3, linger=3600, linger_fraction=None)
    answers, threads = run_workers(dispatcher, Failing(), [1, 2, 3])
    for t in threads:
        t.join()
    assert all(isinstance(a, ConnectionError) and str(a) == "provider down" for a in answers)
    assert len({id(a) for a in answers}) == 3


def test_linger_shrinks_to_a_share_of_the_observed_latency() -> None:
    dispatcher = Dispatcher(batch_size=100, linger=3600, linger_fraction=0.5)
    engine = GatedListEngine()
    answers, threads = run_workers(dispatcher, engine, ["first"])
    threads[0].join()  # all-queued rule: goes at once; its round trip is now observed
    dispatcher.worker_busy()  # a busy worker that never calls: only linger can release
    answers, threads = run_workers(dispatcher, engine, ["second"])
    threads[0].join()  # would take an hour with a fixed linger
    dispatcher.worker_idle()
    assert answers == [(["ans(second)"], {})]
    assert engine.batches == [["first"], ["second"]]


class EchoPlainEngine:
    """A plain executor: each call runs in its caller's thread."""

    caller_runs = True
    slots: BatchSlots | None = None

    def __init__(self) -> None:
        self.threads: list[str] = []

    def call_one(self, argument: Any) -> Answer:
        self.threads.append(threading.current_thread().name)
        return [f"ans({argument})"], {}

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        raise AssertionError("plain calls run in their callers")


def test_plain_engine_calls_are_never_held_back() -> None:
    dispatcher = Dispatcher(batch_size=100, linger=3600, linger_fraction=None)
    engine = EchoPlainEngine()
    dispatcher.worker_busy()  # another busy worker that will not call: a list lane would wait
    answers, threads = run_workers(dispatcher, engine, ["p", "q"])
    for t in threads:
        t.join()
    dispatcher.worker_idle()
    assert answers == [(["ans(p)"], {}), (["ans(q)"], {})]
    assert sorted(engine.threads) == sorted(t.name for t in threads)  # run by the callers


def test_plain_engine_respects_the_inflight_cap() -> None:
    class Gated(EchoPlainEngine):
        def __init__(self) -> None:
            super().__init__()
            self.gate = threading.Event()
            self.entered = threading.Semaphore(0)
            self.inside = 0
            self.max_inside = 0
            self.lock = threading.Lock()

        def call_one(self, argument: Any) -> Answer:
            with self.lock:
                self.inside += 1
                self.max_inside = max(self.max_inside, self.inside)
            self.entered.release()
            self.gate.wait()
            with self.lock:
                self.inside -= 1
            return super().call_one(argument)

    dispatcher = Dispatcher(batch_size=2, linger=3600, max_inflight_batches=1, linger_fraction=None)
    engine = Gated()
    answers, threads = run_workers(dispatcher, engine, list(range(5)))
    engine.entered.acquire()
    engine.gate.set()
    for t in threads:
        t.join()
    assert engine.max_inside <= 2  # one batch of at most batch_size at a time
    assert len(answers) == 5 and all(isinstance(a, tuple) for a in answers)


class StallingDispatcher(Dispatcher):
    """The first operation to mark a worker busy stalls inside the lock until the test lets
    it go: the lock holder preempted mid-operation, as the interpreter's switch interval can
    do to any thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = threading.Event()
        self.go_on = threading.Event()
        self.queued = threading.Semaphore(0)  # one release per operation queued

    def _apply(self, fn: Any, arg: Any, mine: Any = None) -> bool:
        self.queued.release()
        return super()._apply(fn, arg, mine)

    def _op_busy(self, delta: int) -> None:
        if delta == 1 and not self.stalled.is_set():
            self.stalled.set()
            assert self.go_on.wait(timeout=30)
        super()._op_busy(delta)


def test_no_thread_waits_for_a_stalled_lock_holder() -> None:
    dispatcher = StallingDispatcher(batch_size=3, linger=3600, linger_fraction=None)
    holder = threading.Thread(target=dispatcher.worker_busy)
    holder.start()
    assert dispatcher.stalled.wait(timeout=30)
    engine = GatedListEngine()
    # Three workers mark themselves busy and submit while the holder is stuck: none of them
    # may block on the lock (this thread's own worker_busy calls would hang the test).
    answers, threads = run_workers(dispatcher, engine, ["a", "b", "c"])
    for _ in range(1 + 3 + 3):  # the holder's operation, three busy, three calls
        assert dispatcher.queued.acquire(timeout=30)
    assert engine.batches == []  # nothing ran: every operation waits for the holder
    dispatcher.go_on.set()  # the holder runs them all, and the batch of three goes
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    holder.join(timeout=30)
    assert engine.batches == [["a", "b", "c"]]
    assert answers == [(["ans(a)"], {}), (["ans(b)"], {}), (["ans(c)"], {})]


class RandomLatencyEngine:
    """An executor answering after a random pause, for churn tests: list-taking, or plain
    (each call run by its caller)."""

    def __init__(self, seed: int, caller_runs: bool) -> None:
        self.caller_runs = caller_runs
        self.slots: BatchSlots | None = None
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def _pause(self) -> None:
        with self.lock:
            pause = self.rng.uniform(0, 0.002)
        time.sleep(pause)  # latency, not synchronisation

    def call_one(self, argument: Any) -> Answer:
        assert self.caller_runs, "a list-taking engine gets call_batch"
        self._pause()
        return ([f"ans({argument})"], {})

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        self._pause()
        return [([f"ans({a})"], {}) for a in arguments]


@pytest.mark.parametrize("plain", [False, True], ids=["list", "plain"])
@pytest.mark.parametrize("cap", [None, 2])
@pytest.mark.parametrize("seed", [1, 2])
def test_churn_of_many_workers_strands_no_call(plain: bool, cap: int | None, seed: int) -> None:
    """64 workers go busy, call, and go idle at random, 3,200 calls in all: every call gets
    its own answer, and the dispatcher ends with nothing queued, busy or pending."""
    dispatcher = Dispatcher(batch_size=7, linger=0.001, max_inflight_batches=cap)
    engine = RandomLatencyEngine(seed, caller_runs=plain)
    workers, calls = 64, 50
    wrong: list[Any] = []

    def worker(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        busy = False
        for call in range(calls):
            if not busy:
                dispatcher.worker_busy()
                busy = True
            argument = f"{number}-{call}"
            answer = dispatcher.submit("e", engine, argument)
            if answer != ([f"ans({argument})"], {}):
                wrong.append((argument, answer))
            if rng.random() < 0.3:
                dispatcher.worker_idle()
                busy = False
        if busy:
            dispatcher.worker_idle()

    before = set(threading.enumerate())
    run_to_the_end([threading.Thread(target=worker, args=(n,)) for n in range(workers)])
    assert wrong == []
    assert dispatcher.engine_calls == workers * calls
    assert dispatcher.max_batch <= 7
    assert (dispatcher._busy, dispatcher._queued) == (0, 0)
    assert dispatcher._run_slots is None or dispatcher._run_slots.in_use == 0
    assert not dispatcher._ops
    assert set(threading.enumerate()) == before


@pytest.mark.parametrize(
    ("plain", "cap"), [(False, None), (False, 1), (True, 1)], ids=["list", "list-capped", "plain"]
)
def test_calls_leave_no_reference_cycles(plain: bool, cap: int | None) -> None:
    """What a call allocates is freed by reference counting alone. Garbage in cycles waits
    for the cyclic GC, and every collection it triggers stalls every worker: a cycle per
    call doubled the collections of a benchmark run and cost 4 % of its throughput."""
    dispatcher = Dispatcher(batch_size=2, linger=0, max_inflight_batches=cap)
    engine = EchoPlainEngine() if plain else GatedListEngine()
    calls = 300

    def run() -> None:
        for number in range(calls):
            assert dispatcher.submit("e", engine, number)[0] == [f"ans({number})"]

    dispatcher.worker_busy()
    in_cycles = left_in_cycles(run)
    dispatcher.worker_idle()
    assert dispatcher.batches == calls  # batches of one, each a full trip through the queue
    assert in_cycles < calls // 10


class FailingListEngine:
    """A list-taking executor whose batches fail: as a whole (it raises) or per member."""

    caller_runs = False
    slots: BatchSlots | None = None

    def __init__(self, whole: bool) -> None:
        self.whole = whole

    def call_one(self, argument: Any) -> Answer:
        raise AssertionError("dispatch must use call_batch")

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        if self.whole:
            raise RuntimeError(f"a batch of {len(arguments)} failed")
        return [ValueError(f"no answer for {argument}") for argument in arguments]


@pytest.mark.parametrize(
    ("whole", "cap"),
    [(True, None), (True, 1), (False, None)],
    ids=["batch-error", "batch-error-capped", "member-error"],
)
def test_failed_calls_leave_no_reference_cycles(whole: bool, cap: int | None) -> None:
    """An error raised in a worker carries a traceback, whose frames keep their callers:
    any of those frames still holding the error makes a cycle, one per failed call of a run
    against a failing provider, each left to the cyclic GC and its stalls."""
    dispatcher = Dispatcher(batch_size=2, linger=0, max_inflight_batches=cap)
    engine = FailingListEngine(whole)
    calls = 300
    raised: list[type[BaseException]] = []

    def run() -> None:
        for number in range(calls):
            try:
                dispatcher.submit("e", engine, number)
            except (RuntimeError, ValueError) as exc:
                raised.append(type(exc))

    dispatcher.worker_busy()
    in_cycles = left_in_cycles(run)
    dispatcher.worker_idle()
    assert raised == [RuntimeError if whole else ValueError] * calls
    assert dispatcher.batches == calls  # batches of one, each a full trip through the queue
    assert in_cycles < calls // 10


class CountingSharedEngine(RandomLatencyEngine):
    """A list-taking engine with slots of its own, counting the batches inside it at once."""

    def __init__(self, seed: int, capacity: int) -> None:
        super().__init__(seed, caller_runs=False)
        self.slots = BatchSlots(capacity)
        self.inside = 0
        self.most_inside = 0

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            return super().call_batch(arguments)
        finally:
            with self.lock:
                self.inside -= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_runs_sharing_an_engines_slots_keep_to_them_and_strand_no_call(seed: int) -> None:
    """Four runs (dispatchers) of 24 workers each send to one engine that serves 3 batches
    at once: never more than 3 are inside it, every call gets its own answer, every run
    finishes (a freed slot reaches the runs that wait for one) and all slots come back."""
    engine = CountingSharedEngine(seed, capacity=3)
    dispatchers = [Dispatcher(batch_size=5, linger=0.001) for _ in range(4)]
    wrong: list[Any] = []

    def worker(dispatcher: Dispatcher, name: str) -> None:
        dispatcher.worker_busy()
        try:
            for call in range(30):
                argument = f"{name}-{call}"
                answer = dispatcher.submit("e", engine, argument)
                if answer != ([f"ans({argument})"], {}):
                    wrong.append((argument, answer))
        finally:
            dispatcher.worker_idle()

    before = set(threading.enumerate())
    run_to_the_end(
        [
            threading.Thread(target=worker, args=(d, f"r{r}w{w}"))
            for r, d in enumerate(dispatchers)
            for w in range(24)
        ]
    )
    assert wrong == []
    assert [d.engine_calls for d in dispatchers] == [24 * 30] * 4
    assert 1 <= engine.most_inside <= 3
    assert engine.slots.in_use == 0
    assert set(threading.enumerate()) == before
