"""The call queue of one run, the rules that release batches, and the batches in flight.

A batch for a list-taking engine is released when ``batch_size`` calls wait, when every
busy worker of the run has its call queued (no further call can arrive, so waiting longer
only adds latency), or when its oldest call has lingered. A call lingers at most ``linger``
seconds and at most ``linger_fraction`` of the engine's observed latency (an EWMA over
finished batches): while a run is latency-bound every ms a call waits is a ms of throughput
lost, so the wait is kept to a small share of what the engine costs anyway. Calls to a
plain engine are not held back at all (see ``_ready``). A cap on the batches out at once
comes from the run (``max_inflight_batches``, for all its engines) or else from a
list-taking engine that declares what it serves at once (its slots are shared by every run
sending to it, see ``batch_slots.py``); a finished batch lets the next one go. Under a cap
the trade turns: a batch holds one of few slots for a whole round trip, so a call lingers
the full ``linger`` (no share of the latency), and a call that lingered out while the cap
held it back lingers once more when a slot comes free, for the calls about to follow.

Nothing polls and no thread of its own runs here: each caller sleeps on its own signal.
The call at the head of a lane sleeps with its linger deadline as the timeout, and when it
passes releases the batch itself and leads it; a caller whose call completes a batch leads
it too. Members of a batch led by someone else sleep untimed until their answer is set, so
a thread wakes once per call in the common case.

No thread ever blocks on the dispatcher's lock. Under the GIL a plain lock convoys: a
holder preempted by the interpreter's switch interval keeps it while hundreds of runnable
threads queue on it, and each woken waiter then holds it again while it waits for the GIL.
Measured at 400 workers, up to a quarter of all calls waited on it in a run, and its CPU per
call up to doubled. So every change of shared state is an *operation* put on a queue (an atomic
``deque.append``), and whoever gets the lock without waiting runs every queued operation,
its own and others', then looks again after letting go; a thread that finds the lock taken
leaves its operation to the holder and goes to sleep on its own signal. An operation that
settles another thread's call signals that thread; every role is set before its signal, so
a sleeper reads its role without losing a wake-up (a spurious one only costs a look). A
woken sleeper whose role is final (run, lead, answered) goes on without the lock, and the
leader hands out answers without it too, unless an in-flight cap waits on the batch count.

All coordination state lives in the :class:`Dispatcher` instance, one per run.
"""

from __future__ import annotations

import time
from _thread import allocate_lock
from collections import deque
from collections.abc import Callable
from typing import Any

from symbatcher.batch_slots import BatchSlots
from symbatcher.errors import RunCancelledError
from symbatcher.executors import Answer, Executor, Outcome, answer_of, exception_for_member

# A call's role: queued; in a batch someone else leads; to run itself (plain engine); to
# lead its batch (list engine); answered. The last three are final: a role >= _EXECUTE
# never changes again.
_WAIT, _SENT, _EXECUTE, _LEAD, _DONE = range(5)

#: seconds a call may wait for its batch to fill, and (uncapped) the largest share of the
#: engine's observed latency it may wait: the linger's cost in a latency-bound run
DEFAULT_LINGER = 0.005
DEFAULT_LINGER_FRACTION = 0.002


class _Signal:
    """A one-slot wake-up for one sleeping thread: a raw lock held while nothing is pending.

    ``threading.Event`` costs a condition, a fresh waiter lock per wait and a re-acquire
    of the condition's lock on waking, in Python code, under the GIL; with hundreds of
    workers those round trips were a measurable share of CPU per call. A raw lock does the
    same job in C: ``set`` releases it (a no-op when a wake-up is already pending), and a
    successful ``wait`` takes it again, which consumes the wake-up.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        try:  # noqa: SIM105 (a hot path: suppress() costs a context manager)
            self._lock.release()
        except RuntimeError:
            pass  # a wake-up is pending already

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until set (True, the wake-up is consumed) or the timeout passes (False)."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(True, timeout)


class _Call:
    __slots__ = (
        "argument",
        "batch",
        "deadline",
        "executor",
        "key",
        "lingered_again",
        "outcome",
        "role",
        "signal",
        "timed",
    )

    def __init__(self, argument: Any, key: str, executor: Executor) -> None:
        self.argument = argument
        self.key = key  # its lane
        self.executor = executor
        self.deadline = 0.0  # set when it joins its lane
        self.signal = _Signal()
        self.role = _WAIT
        self.timed = False  # whether its thread sleeps with the linger deadline as timeout
        self.lingered_again = False  # see Dispatcher._linger_again: once per call
        self.batch: _Batch | None = None
        self.outcome: Outcome | None = None

    def finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.role = _DONE
        self.signal.set()

    def take_outcome(self) -> Outcome:
        """The outcome, no longer held by the call: an error raised from it must not be
        reachable from the raising frames (see ``answer_of``)."""
        outcome, self.outcome = self.outcome, None
        assert outcome is not None
        return outcome


class _Lane:
    """The waiting calls for one engine, and the slots its batches take (the run's own, else
    the engine's, else none)."""

    __slots__ = ("executor", "latency", "slots", "waiting")

    def __init__(self, executor: Executor, slots: BatchSlots | None) -> None:
        self.executor = executor
        self.slots = slots
        self.waiting: deque[_Call] = deque()
        self.latency: float | None = None  # EWMA of batch round trips, seconds

    def observe(self, seconds: float) -> None:
        self.latency = seconds if self.latency is None else 0.8 * self.latency + 0.2 * seconds


class _Batch:
    __slots__ = ("calls", "lane", "remaining", "sent_at")

    def __init__(self, calls: list[_Call], lane: _Lane) -> None:
        self.calls = calls
        self.lane = lane
        self.remaining = len(calls)
        self.sent_at = time.monotonic()

    @property
    def executor(self) -> Executor:
        return self.lane.executor


class Dispatcher:
    """Queues a run's engine calls and releases them to the engine in batches."""

    def __init__(
        self,
        batch_size: int,
        linger: float = DEFAULT_LINGER,
        max_inflight_batches: int | None = None,
        linger_fraction: float | None = DEFAULT_LINGER_FRACTION,
    ) -> None:
        self.batch_size = batch_size
        self.linger = linger
        self.linger_fraction = linger_fraction
        self.max_inflight_batches = max_inflight_batches
        self._run_slots = None if max_inflight_batches is None else BatchSlots(max_inflight_batches)
        self._lock = allocate_lock()  # taken only without waiting; see the module docstring
        self._ops: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._mine: _Call | None = None  # the call of the thread running operations
        self._lanes: dict[str, _Lane] = {}
        self._busy = 0  # workers running an item
        self._queued = 0  # of those, workers whose call waits in a lane
        self._cancelled: BaseException | None = None
        self.engine_calls = 0
        self.plain_calls = 0  # of those, calls to a plain engine (each sent on its own)
        self.batches = 0
        self.plain_batches = 0  # of those, a plain engine's: only units of an in-flight cap
        self.max_batch = 0

    def _apply(self, fn: Callable[[Any], None], arg: Any, mine: _Call | None = None) -> bool:
        """Queue an operation and run the queue if the lock is free; True if this thread
        ran the operation itself (its effects are then visible on return).

        The holder looks at the queue again after letting the lock go, so an operation
        queued while it ran is never stranded: either its thread gets the lock, or the
        holder's second look (which comes after that thread's failed attempt) finds it.
        """
        op = (fn, arg)
        ops = self._ops
        ops.append(op)
        lock = self._lock
        ran = False
        while ops and lock.acquire(False):
            try:
                self._mine = mine
                while ops:
                    queued = ops.popleft()
                    queued[0](queued[1])
                    ran = ran or queued is op
            finally:
                self._mine = None
                lock.release()
        return ran

    # ----------------------------------------------------------------- workers
    def worker_busy(self) -> None:
        """A worker took work and may call the engine; batches may wait for its calls."""
        self._apply(self._op_busy, 1)

    def worker_idle(self) -> None:
        """A worker will make no call until it is busy again; no batch should wait for it."""
        self._apply(self._op_busy, -1)

    def submit(self, lane_key: str, executor: Executor, argument: Any) -> Answer:
        """Queue one call and block this worker until its answer (or error) is there."""
        if self._cancelled is not None:
            raise RunCancelledError("the run was cancelled") from self._cancelled
        if self._run_slots is None and (
            executor.caller_runs or (self.batch_size == 1 and executor.slots is None)
        ):
            # no cap, and a plain engine or batches of one: nothing to wait for or hand
            # over, so the caller runs its call itself without the round trips
            if executor.caller_runs:
                self._apply(self._count_plain, 1)
                return executor.call_one(argument)
            self._apply(self._count_batch, 1)
            return answer_of(executor.call_batch([argument])[0])
        call = _Call(argument, lane_key, executor)
        self._apply(self._op_enqueue, call, call)
        if call.role < _EXECUTE:
            self._await_release(call)
        # Taken off the call: call -> batch -> calls -> call is a reference cycle, which
        # only the cyclic GC would free, and its collections stall every worker.
        batch, call.batch = call.batch, None
        if call.role == _EXECUTE:
            assert batch is not None
            try:
                return call.executor.call_one(argument)
            finally:
                self._apply(self._op_member_done, batch)
        if call.role == _LEAD:
            assert batch is not None
            self._lead(batch)
        return answer_of(call.take_outcome())

    def _await_release(self, call: _Call) -> None:
        """Sleep until the call is to run, lead, or is answered.

        Woken while still queued means the call's state changed (it became its lane's head
        and should time its linger, say); a passed deadline means the call releases its
        batch itself. If another thread holds the lock, that thread runs the release and
        signals this one with the outcome.
        """
        while call.role < _EXECUTE:
            if not call.timed:
                call.signal.wait()
                continue
            remaining = call.deadline - time.monotonic()
            if remaining > 0:
                call.signal.wait(remaining)
            elif not self._apply(self._op_expire, call, call):
                call.signal.wait()

    # -------------------------------------------------------------- operations
    # Each runs under the lock, by whichever thread holds it, and must not raise.
    def _op_busy(self, delta: int) -> None:
        self._busy += delta
        if delta < 0:
            self._release()

    def _op_enqueue(self, call: _Call) -> None:
        if self._cancelled is not None:
            self._fail_cancelled(call, "the run was cancelled")
            return
        lane = self._lanes.get(call.key)
        if lane is None:
            slots = self._run_slots or call.executor.slots
            lane = self._lanes[call.key] = _Lane(call.executor, slots)
        call.deadline = time.monotonic() + self._linger_for(lane)
        call.timed = not lane.waiting
        lane.waiting.append(call)
        self._queued += 1
        self._release()
        if call.timed and call.role == _WAIT and call is not self._mine:
            call.signal.set()  # its thread may be asleep already: it is to time the linger

    def _op_expire(self, call: _Call) -> None:
        """The call's linger deadline passed (it is its lane's head)."""
        if call.role == _WAIT:
            self._release()
            if call.role == _WAIT:
                call.timed = False  # held by the in-flight cap: a finished batch releases it
        if call is not self._mine:
            call.signal.set()

    def _op_member_done(self, batch: _Batch) -> None:
        batch.remaining -= 1
        if batch.remaining == 0:
            self._batch_done(batch)

    def slot_freed(self) -> None:
        """A slot this run waits for came free (perhaps from another run's batch)."""
        self._apply(self._op_slot_freed, None)

    def _op_slot_freed(self, _: None) -> None:
        self._linger_again()
        self._release()

    def _op_cancel(self, _: None) -> None:
        for lane in self._lanes.values():
            while lane.waiting:
                message = "the run was cancelled before this call was sent"
                self._fail_cancelled(lane.waiting.popleft(), message)
        self._queued = 0

    def _fail_cancelled(self, call: _Call, message: str) -> None:
        error = RunCancelledError(message)
        error.__cause__ = self._cancelled
        call.finish(error)

    # ------------------------------------------------------------------ release
    def _linger_for(self, lane: _Lane) -> float:
        """Uncapped, a call waits at most a small share of the engine's latency: the run is
        latency-bound and every ms waited is lost. Under a cap a batch holds one of few
        slots for a whole round trip, so filling it is worth the plain ``linger``."""
        if lane.latency is None or self.linger_fraction is None or lane.slots is not None:
            return self.linger
        return min(self.linger, self.linger_fraction * lane.latency)

    def _release(self) -> None:
        """Release every batch the rules and the slots allow now. Runs under the lock."""
        if self._cancelled is not None:
            self._op_cancel(None)  # in case this runs before cancel()'s own operation
            return
        for lane in self._lanes.values():
            while self._ready(lane):
                if lane.slots is not None and not lane.slots.try_take(self):
                    break  # told by slot_freed when one comes free
                count = min(self.batch_size, len(lane.waiting))
                calls = [lane.waiting.popleft() for _ in range(count)]
                self._queued -= count
                self._launch(_Batch(calls, lane))
                if lane.waiting and not lane.waiting[0].timed:
                    head = lane.waiting[0]
                    head.timed = True
                    head.signal.set()  # the new head times the lane's linger

    def _ready(self, lane: _Lane) -> bool:
        """Whether the lane's head may go now, by the release rules.

        A plain engine answers each call on its own whatever the batch, so holding its
        calls back can only add latency: for it a batch is just the unit a cap admits, and
        calls go as soon as a slot allows. For a list-taking engine a worker whose call is
        out in a batch will call again when the batch returns, so "no further call can
        arrive" means: every busy worker has its call queued.
        """
        return bool(lane.waiting) and (
            lane.executor.caller_runs
            or len(lane.waiting) >= self.batch_size
            or self._queued >= self._busy
            or lane.waiting[0].deadline <= time.monotonic()
        )

    def _count_batch(self, size: int) -> None:
        self.batches += 1
        self.engine_calls += size
        self.max_batch = max(self.max_batch, size)

    def _count_plain(self, size: int) -> None:
        """A batch of a plain engine: its calls go one by one, whatever the batch."""
        self._count_batch(size)
        self.plain_calls += size
        self.plain_batches += 1

    def _launch(self, batch: _Batch) -> None:
        """Give the batch's calls their roles and wake whoever must act. A call of the
        thread running this (awake already) leads its batch and is not signalled."""
        mine = self._mine
        if batch.executor.caller_runs:
            self._count_plain(len(batch.calls))
            for call in batch.calls:
                call.batch = batch
                call.role = _EXECUTE
                if call is not mine:
                    call.signal.set()
            return
        self._count_batch(len(batch.calls))
        leader = batch.calls[0]
        for call in batch.calls:
            call.role = _SENT
            call.timed = False
            if call is mine:
                leader = call
        leader.batch = batch
        leader.role = _LEAD
        if leader is not mine:
            leader.signal.set()

    def _lead(self, batch: _Batch) -> None:
        """Run a list-taking engine on the whole batch and hand each member its outcome."""
        outcomes: list[Outcome]
        try:
            outcomes = batch.executor.call_batch([c.argument for c in batch.calls])
        except BaseException as exc:  # every member must wake, whatever happened
            outcomes = [exc, *(exception_for_member(exc) for _ in batch.calls[1:])]
        # Answered without the lock: a final role never changes back and no one but this
        # thread touches a sent call, so a sleeper that wakes for any reason sees its answer,
        # and no wake-up can be lost. The lock is used only where a cap waits on the count;
        # without one, the round trip per batch cost more than it protects (a lost update of
        # the latency average is harmless).
        for call, outcome in zip(batch.calls, outcomes, strict=True):
            call.outcome = outcome
            call.role = _DONE
        # An error's traceback reaches this frame (its frames keep their callers), so the
        # frame must not keep the error: a cycle only the cyclic GC would free.
        del outcomes, outcome
        if batch.lane.slots is None:
            batch.lane.observe(time.monotonic() - batch.sent_at)
        else:
            self._apply(self._batch_done, batch)
        for call in batch.calls:
            call.signal.set()

    def _batch_done(self, batch: _Batch) -> None:
        batch.lane.observe(time.monotonic() - batch.sent_at)
        if batch.lane.slots is not None:
            # Told first: a run waiting for this engine (this one too, then once more)
            # looks before this run's own look below takes the slot again.
            batch.lane.slots.give_back()
            self._linger_again()
            self._release()  # a call held back by the cap may go now (nothing else changed)

    def _linger_again(self) -> None:
        """A slot came free: a list lane's head that lingered out while the cap held it
        back lingers once more before it goes, so the calls of the batch that just came
        back (its members call again within a few ms) can join it instead of waiting a
        round trip for the next slot (benchmarks/bench_fill.py: fuller batches, more
        items/s). Once per call: a plain lane's calls go whenever a slot is free, and
        lingering at every freed slot could leave this call behind them for good."""
        now = time.monotonic()
        for lane in self._lanes.values():
            if not lane.waiting or lane.executor.caller_runs or lane.slots is None:
                continue
            head = lane.waiting[0]
            if head.deadline <= now and not head.lingered_again:
                head.lingered_again = True
                head.deadline = now + self._linger_for(lane)
                if not head.timed:
                    head.timed = True  # its thread sleeps untimed (see _op_expire)
                    if head is not self._mine:
                        head.signal.set()

    # ----------------------------------------------------------------- shutdown
    def cancel(self, reason: BaseException | None = None) -> None:
        """Fail every waiting call and every later one; calls at the engine finish.

        Takes effect for new calls at once; the waiting ones fail when the operation runs
        (at once unless another thread holds the lock, then when it lets go).
        """
        if self._cancelled is None:
            self._cancelled = reason or RunCancelledError("the run was cancelled")
        self._apply(self._op_cancel, None)

    @property
    def cancelled(self) -> bool:
        return self._cancelled is not None
