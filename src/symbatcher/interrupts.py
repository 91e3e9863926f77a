"""Holding a Ctrl-C back while a run takes itself apart; a SIGTERM raised like a Ctrl-C.

A KeyboardInterrupt can land between any two bytecodes of the main thread. Most of a run's
shutdown may be cut short (a second Ctrl-C means "stop now"), but two short steps may not:
telling every worker to stop (cancelling the dispatcher's waiting calls, opening the
window a blocked worker waits on) and undoing the engine binding. Cut in half, the first
leaves workers asleep for good and the second leaves symai's engine replaced. Neither step
blocks, so holding a Ctrl-C until it is done delays it by microseconds.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


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
