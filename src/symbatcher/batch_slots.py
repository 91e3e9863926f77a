"""Batch slots: how many batches may be out at an engine at once.

A run given ``max_inflight_batches`` has slots of its own. A list-taking engine that
declares what it serves at once (``max_concurrent_batches``) has one set of slots for the
process, held by its executor (one per engine object, whatever names it is bound under),
so every run that sends to it at the same time (the jobs of ``symbatcher serve``, a run
inside another's expression) shares them: the engine's limit holds for the process, not
once per run.

A dispatcher that finds no free slot is put on a waiting list and told when one comes
free (``slot_freed``): it then looks again, with every other waiting dispatcher, and one of
them takes it. The lock guards a count and is never held while calling out, so no
dispatcher's lock is ever taken under it.
"""

from __future__ import annotations

from _thread import allocate_lock
from typing import Protocol

from symbatcher.checks import positive_int


class SlotWaiter(Protocol):
    def slot_freed(self) -> None:
        """A slot came free: look again (must not block, nor wait for a lock)."""
        ...


class BatchSlots:
    """A counting semaphore that does not block: a taker that finds none waits to be told."""

    __slots__ = ("_free", "_lock", "_waiting", "capacity")

    def __init__(self, capacity: int) -> None:
        positive_int("capacity", capacity)
        self.capacity = capacity
        self._free = capacity
        self._lock = allocate_lock()
        self._waiting: dict[int, SlotWaiter] = {}  # in order of arrival, once each

    def try_take(self, waiter: SlotWaiter) -> bool:
        """Take a slot, or put ``waiter`` on the list to be told when one comes free (both
        under the lock, so a slot freed in between is not missed)."""
        with self._lock:
            if self._free:
                self._free -= 1
                return True
            self._waiting[id(waiter)] = waiter
            return False

    def give_back(self) -> None:
        with self._lock:
            if self._free == self.capacity:
                raise ValueError("a slot was given back more often than taken")
            self._free += 1
            waiting = list(self._waiting.values())
            self._waiting.clear()
        for waiter in waiting:
            waiter.slot_freed()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free
