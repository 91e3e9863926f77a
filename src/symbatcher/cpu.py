"""CPU slots: how many of a run's workers may run Python at once.

A run has many workers so that many engine calls can wait at once; but the Python around
the calls (symai's prompt rendering, pre- and post-processing: ~5 ms a query for its chat
engines) runs one thread at a time under the GIL anyway, and with dozens of threads
wanting it the hand-offs cost CPU too (measured here: a plain pool of 50 threads over
HTTP spent ~12 ms CPU a query against 6 ms in a plain loop; the same pool with two slots,
~8 ms, in two runs; inside BatchScheduler the gain was within this machine's noise, so
it is opt-in: ``BatchScheduler(cpu_slots=2)``). A worker takes a slot to run its item and
gives it back while it waits: for the engine, for a pace or a backoff, for the next item.
Blocking waits never hold a slot, so nothing can deadlock on one.
"""

from __future__ import annotations

import threading


class CpuSlots:
    """At most ``slots`` workers outside a wait at once (per-thread, re-entrant releases)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"cpu_slots must be >= 1 or None, got {slots!r}")
        self.slots = slots
        self._free = threading.Semaphore(slots)
        self._mine = threading.local()

    def take(self) -> None:
        """Before the worker runs Python of an item."""
        self._free.acquire()
        self._mine.held = True

    def give(self) -> bool:
        """Before a wait; True if this thread held a slot (then ``take`` it back after)."""
        if not getattr(self._mine, "held", False):
            return False
        self._mine.held = False
        self._free.release()
        return True
