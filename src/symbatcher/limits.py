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

    ``set_rate`` stretches the bookings ahead when the rate falls, but a caller asleep on a
    booking cannot see that: it asks :meth:`rescheduled` when it wakes. Without that, a
    learned rate cut by 15% while 200 workers slept on 4 s of bookings let them all go at
    the old rate (the provider answering 429s, cutting again) and then sent nothing for the
    0.6 s the stretch had added behind them.
    """

    def __init__(self, per_minute: float, burst: float = 0.2) -> None:
        if per_minute <= 0:
            raise ValueError(f"a limit must be > 0 per minute, got {per_minute!r}")
        if burst < 0:
            raise ValueError(f"burst must be >= 0 seconds, got {burst!r}")
        self.per_minute = float(per_minute)
        self.burst = burst
        self._tat = 0.0  # theoretical arrival time: when the bucket would be empty again
        self._not_before = 0.0
        self._slowdowns: deque[tuple[float, float]] = deque(maxlen=64)  # (when, stretch)
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """Units per second."""
        return self.per_minute / 60.0

    def reserve(self, amount: float = 1.0, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            increment = amount / self.rate
            # room for at least this one call, however small the burst
            go = max(now, self._not_before, self._tat + increment - max(self.burst, increment))
            self._tat = max(self._tat, go) + increment
            return go - now

    def adjust(self, delta: float) -> None:
        with self._lock:
            self._tat += delta / self.rate

    def hold(self, until: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, until)

    def set_rate(self, per_minute: float, now: float | None = None) -> None:
        """A new rate; calls booked ahead keep their order, their waits rescaled to it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            per_minute = max(per_minute, 1e-3)
            stretch = self.per_minute / per_minute
            if self._tat > now:
                self._tat = now + (self._tat - now) * stretch
            if stretch > 1.0:
                self._slowdowns.append((now, stretch))
            self.per_minute = per_minute

    def rescheduled(self, go: float, since: float) -> float:
        """When a call booked to go at ``go`` goes, given the slowdowns after ``since``
        (its booking, or its last look): its wait stretched as the bookings behind it were.

        Speed-ups are not applied (a caller only oversleeps by the probe's few percent).
        """
        with self._lock:
            for when, stretch in self._slowdowns:
                if since < when < go:
                    go = when + (go - when) * stretch
        return go


class LearnedRate:
    """A rate limit learned from 429s, so a run settles just below a limit nobody told it.

    The first 429 sets the pace to ``decrease`` x the rate that got through (over the
    last ``window`` seconds); every later one cuts the pace itself by ``decrease``
    (multiplicative decrease: a measured rate is inflated by the provider's burst
    allowance, a pace is not). Between cuts the pace probes upwards by ``increase`` of
    itself per second, and only while it is what holds calls back (a pace nobody reaches
    proves nothing). A limit that moves is followed both ways.

    What got through is counted from the calls *sent* before the first 429'd one, less
    those that got a 429 themselves: a provider answers a 429 at once but an admitted
    call only after the model's latency, so at the first 429 most admitted calls are
    still out. (Counted as they came back, a fast client saw 4 calls where 50 got through,
    paced at a quarter of the limit and took half a minute to climb back.) The count is
    spread over at least ``min_span`` seconds: providers meter per minute but enforce
    over about a second (OpenAI: "60,000 requests/minute may be enforced as 1,000
    requests/second"), so a burst lets through about a second's worth however fast it
    was sent.

    Until the first 429 nothing is paced; a 429 before any call got through sets nothing
    (there is no rate to measure yet). One burst of 429s is one signal: only a call sent
    after the last cut, and at least ``cooldown`` seconds after it, can cut again.
    ``Retry-After`` is honoured by the call that got it
    (:class:`~symbatcher.hooks.retry.CallRetry`); the others follow the pace.
    """

    def __init__(
        self,
        decrease: float = 0.85,
        increase: float = 0.04,
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
        # until the first cut: when calls were sent, and when those that got a 429 were
        self._sent: deque[float] = deque()
        self._rejected: deque[float] = deque()
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
            if wait > 0 and elapsed > 0:
                pace.set_rate(pace.per_minute * (1.0 + self.increase * elapsed), now)
        return wait

    def sent(self, at: float | None = None) -> None:
        """A call goes out now (or ``at``); counted only until the first 429 sets a pace."""
        if self.pace is not None:
            return
        at = time.monotonic() if at is None else at
        with self._lock:
            self._sent.append(at)
            _forget(self._sent, at - self.window)

    def limited(self, sent_at: float, now: float | None = None) -> None:
        """A call sent at ``sent_at`` got a 429."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if sent_at < self._last_cut or now - self._last_cut < self.cooldown:
                return
            if self.pace is None:
                rate = self._first_rate(sent_at)
                if rate is None:
                    return  # nothing got through yet: no rate to start from
                self.pace = Pace(max(1.0, self.decrease * rate * 60.0))
                self._sent.clear()
                self._rejected.clear()
            else:
                self.pace.set_rate(max(1.0, self.decrease * self.pace.per_minute), now)
            self._last_cut = now
            self.cuts += 1
            self._last_probe = now

    def _first_rate(self, sent_at: float) -> float | None:
        """Calls a second that got through before the call sent at ``sent_at`` got a 429."""
        since = sent_at - self.window
        self._rejected.append(sent_at)
        _forget(self._rejected, since)
        sent = [t for t in self._sent if since <= t < sent_at]
        through = len(sent) - sum(1 for t in self._rejected if t < sent_at)
        if through <= 0:
            return None
        return through / max(self.min_span, sent_at - min(sent))


def _forget(times: deque[float], before: float) -> None:
    """Drop the times before ``before`` (nearly in order: threads append them)."""
    while times and times[0] < before:
        times.popleft()


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
