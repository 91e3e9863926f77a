"""Pacing for a provider's limits: a fixed rate, a learned rate, and a concurrency cap.

Each is a small object that answers "when may the next call go?" with a number of
seconds, so the caller sleeps exactly that long (cancellably, as an idle worker) and never
polls. Providers meter RPM and TPM as a bucket that refills continuously; :class:`Pace`
mirrors that (the generic cell rate algorithm, by reservation: each call books its slot).
:class:`LearnedRate` finds a limit nobody told us from the 429s it causes.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class Pace:
    """At most ``per_minute`` units a minute, ``burst`` seconds' worth at once.

    ``reserve(amount)`` books the units and returns how long to wait before using them;
    ``adjust(delta)`` corrects a booking once the true amount is known (a token estimate
    against the reported usage); ``hold(until)`` books nothing before ``until``.
    """

    def __init__(self, per_minute: float, burst: float = 0.2) -> None:
        if per_minute <= 0:
            raise ValueError(f"a limit must be > 0 per minute, got {per_minute!r}")
        if burst < 0:
            raise ValueError(f"burst must be >= 0 seconds, got {burst!r}")
        self.per_minute = float(per_minute)
        self.burst = burst
        self._tat = 0.0  # theoretical arrival time: when the bucket would be empty again
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.per_minute / 60.0

    def reserve(self, amount: float = 1.0, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            increment = amount / self.rate
            go = max(now, self._tat + increment - self.burst)
            self._tat = max(self._tat, go) + increment
            return go - now

    def adjust(self, delta: float) -> None:
        with self._lock:
            self._tat += delta / self.rate

    def hold(self, until: float) -> None:
        with self._lock:
            self._tat = max(self._tat, until + self.burst)

    def set_rate(self, per_minute: float, now: float | None = None) -> None:
        """A new rate; calls booked ahead keep their order, their waits rescaled to it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            per_minute = max(per_minute, 1e-3)
            if self._tat > now:
                self._tat = now + (self._tat - now) * self.per_minute / per_minute
            self.per_minute = per_minute


class LearnedRate:
    """A rate limit learned from 429s: cut to ``decrease`` x the rate that got through,
    then probe upwards by ``increase`` (a fraction of the rate) per second, so the run
    settles just below the provider's limit and follows it if it changes.

    Until the first 429 nothing is paced. One burst of 429s (calls that were in flight
    together) counts as one signal: a cut happens at most once per ``cooldown`` seconds.
    The rate that got through is measured over at least ``min_span`` seconds, so the first
    answers after a start do not read as a rate; a 429 before any call got through sets
    no rate (there is nothing to measure yet). ``Retry-After`` is honoured by the call that
    got it (:class:`~symbatcher.hooks.retry.CallRetry`); the others follow the pace.
    """

    def __init__(
        self,
        decrease: float = 0.85,
        increase: float = 0.03,
        window: float = 3.0,
        cooldown: float = 1.0,
        min_span: float = 1.0,
    ) -> None:
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {decrease!r}")
        self.decrease = decrease
        self.increase = increase
        self.window = window
        self.cooldown = cooldown
        self.min_span = min_span
        self.pace: Pace | None = None
        self.cuts = 0
        self._ok: deque[float] = deque()  # completion times within the window
        self._first_ok: float | None = None
        self._last_cut = float("-inf")
        self._last_probe = 0.0
        self._lock = threading.Lock()

    @property
    def per_minute(self) -> float | None:
        return self.pace.per_minute if self.pace is not None else None

    def reserve(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        pace = self.pace
        if pace is None:
            return 0.0
        wait = pace.reserve(1.0, now)
        with self._lock:
            elapsed = now - self._last_probe
            self._last_probe = now
            if wait > 0 and elapsed > 0:  # probe only while the pace is what holds calls back
                pace.set_rate(pace.per_minute * (1.0 + self.increase * elapsed), now)
        return wait

    def succeeded(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._first_ok is None:
                self._first_ok = now
            self._ok.append(now)
            while self._ok and self._ok[0] < now - self.window:
                self._ok.popleft()

    def limited(self, sent_at: float, now: float | None = None) -> None:
        """A call sent at ``sent_at`` got a 429. Calls sent before the last cut say nothing
        about the new rate, so only a 429 of a call sent since can cut again."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._ok and self._ok[0] < now - self.window:
                self._ok.popleft()
            if not self._ok or sent_at < self._last_cut or now - self._last_cut < self.cooldown:
                return
            self._last_cut = now
            self.cuts += 1
            assert self._first_ok is not None
            span = max(self.min_span, min(self.window, now - self._first_ok))
            observed = len(self._ok) / span * 60.0
            current = self.pace.per_minute if self.pace is not None else observed
            target = max(1.0, self.decrease * min(observed, current))
            if self.pace is None:
                self.pace = Pace(target)
            else:
                self.pace.set_rate(target, now)
            self._last_probe = now


class Slots:
    """At most ``limit`` calls at once; the rest wait their turn (no polling)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {limit!r}")
        self.limit = limit
        self._used = 0
        self._free = threading.Condition()

    def acquire(self, cancelled: threading.Event | None = None) -> bool:
        """Take a slot; False if ``cancelled`` was set meanwhile (call ``wake`` on cancel)."""
        with self._free:
            while self._used >= self.limit:
                if cancelled is not None and cancelled.is_set():
                    return False
                self._free.wait()
            self._used += 1
            return True

    def release(self) -> None:
        with self._free:
            self._used -= 1
            self._free.notify()

    def wake(self) -> None:
        with self._free:
            self._free.notify_all()
