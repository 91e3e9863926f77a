"""Pressing Ctrl-C from a test: a real SIGINT to the main thread, at a known place; or a
signal that another thread takes, as the kernel may have it."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path


def press() -> None:
    """A real SIGINT to the main thread, as a terminal sends it: it wakes a blocked wait."""
    assert threading.main_thread().ident is not None
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def taken_by_another_thread(
    signum: int, seen: threading.Event, waits_in: str, *, not_in: str | None = None
) -> tuple[threading.Thread, list[str]]:
    """A thread that takes ``signum`` itself once the main thread sleeps in a wait from
    ``waits_in`` (see :func:`main_thread_waits_in`), as the kernel may give any thread a
    signal sent to the process: CPython then only notes it for the main thread. If the
    main thread has not acted on it (``seen``) within 10 s, the signal goes to the main
    thread too, so that a failing test ends, and the list returned says so."""
    missed: list[str] = []

    def take() -> None:
        main_thread_waits_in(waits_in, not_in=not_in)
        signal.pthread_kill(threading.get_ident(), signum)
        if not seen.wait(timeout=10):
            missed.append("the main thread did not see the signal")
            assert threading.main_thread().ident is not None
            signal.pthread_kill(threading.main_thread().ident, signum)

    thread = threading.Thread(target=take)
    thread.start()
    return thread, missed


def main_thread_waits_in(function: str, *, not_in: str | None = None) -> None:
    """Until the main thread sleeps in a wait called (at any depth) from ``function`` and
    not from ``not_in``: where a Ctrl-C is to land. Polled: nothing signals it.

    The kernel must say the thread sleeps, too: a SIGINT that arrives after the interpreter
    let go of the GIL but before the thread blocks wakes nothing, and the wait goes on
    (CPython checks for signals before it blocks, not in between) until its next look.
    """
    main = threading.main_thread()
    assert main.ident is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(main.ident)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        waiting = names and names[0] in ("wait", "_wait_for_tstate_lock")
        if (
            waiting
            and function in names
            and (not_in is None or not_in not in names)
            and _asleep(main.native_id)
        ):
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"the main thread never waited in {function}")


def _asleep(native_id: int | None) -> bool:
    """Whether the kernel has the thread asleep (Linux; elsewhere, assumed)."""
    try:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "S"
