"""Holding a Ctrl-C back while a run takes itself apart; a SIGTERM raised like a Ctrl-C;
waits in the main thread that no signal can slip past.

A KeyboardInterrupt can land between any two bytecodes of the main thread. Most of a run's
shutdown may be cut short (a second Ctrl-C means "stop now"), but two short steps may not:
telling every worker to stop (cancelling the dispatcher's waiting calls, opening the
window a blocked worker waits on) and undoing the engine binding. Cut in half, the first
leaves workers asleep for good and the second leaves symai's engine replaced. Neither step
blocks, so holding a Ctrl-C until it is done delays it by microseconds.

CPython runs a Python signal handler in the main thread, between bytecodes, and an untimed
wait there can miss the signal until the wait ends (a whole run, or a worker process's
life). The kernel gives a signal sent to the process to whichever of its threads takes it
first, and when that is a worker, CPython only notes it: the main thread's sleep goes on.
And one that comes after the main thread last looked but before it blocked wakes nothing.
So the main thread waits in slices of :data:`LOOK` seconds and looks between them.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")
LOOK = 0.25  # seconds a Ctrl-C or SIGTERM may wait for the main thread to see it


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Run the block whole; a SIGINT that came meanwhile is handled after it, by the
    handler that was installed before (so a KeyboardInterrupt is raised on leaving).

    Only the main thread receives Python's signals, and only it may install a handler;
    elsewhere, and where no Python-level handler can be restored, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # installed outside Python: it could not be put back
        yield
        return
    held: list[FrameType | None] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(frame)

    try:
        signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            else:  # SIG_DFL or SIG_IGN: let the system do what it would have done
                signal.raise_signal(signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """A SIGTERM, raised in the main thread like a Ctrl-C: stop now."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the block, where by
    default it ends the process on the spot (``symbatcher serve``: uvicorn shuts down on
    it, then sends it again to the handler it found, before the running jobs could be
    given back to the queue)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def wait_until(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` that a Ctrl-C or SIGTERM cuts short in the main thread,
    whichever thread the kernel gave it to (see the module's docstring)."""
    if not _in_main_thread():
        return event.wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = LOOK if deadline is None else min(LOOK, deadline - time.monotonic())
        if event.wait(max(left, 0.0)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def receive(source: queue.SimpleQueue[T]) -> T:
    """``source.get()`` that a Ctrl-C or SIGTERM cuts short in the main thread, as
    :func:`wait_until`."""
    if not _in_main_thread():
        return source.get()
    while True:
        try:
            return source.get(timeout=LOOK)
        except queue.Empty:
            continue
