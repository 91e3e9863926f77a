"""Pacing policies on a fake clock: exact waits, no sleeping."""

from __future__ import annotations

import threading

import pytest

from symbatcher.limits import LearnedRate, Pace, Slots


def test_pace_admits_a_burst_then_spaces_calls_evenly() -> None:
    pace = Pace(per_minute=600, burst=0.5)  # 10/s, 5 at once
    waits = [pace.reserve(1.0, now=100.0) for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.1, 0.2, 0.3])


def test_pace_refills_over_time() -> None:
    pace = Pace(per_minute=60, burst=0.0)  # 1/s
    assert pace.reserve(1.0, now=10.0) == 0.0
    assert pace.reserve(1.0, now=10.5) == pytest.approx(0.5)
    assert pace.reserve(1.0, now=20.0) == 0.0  # idle time refilled it


def test_pace_counts_amounts_and_adjusts_bookings() -> None:
    pace = Pace(per_minute=6000, burst=0.0)  # 100 tokens/s
    assert pace.reserve(50, now=0.0) == 0.0
    assert pace.reserve(50, now=0.0) == pytest.approx(0.5)
    pace.adjust(-50)  # the first call used 50 tokens fewer than booked
    assert pace.reserve(50, now=0.0) == pytest.approx(0.5)


def test_pace_hold_and_rate_change() -> None:
    pace = Pace(per_minute=60, burst=0.0)
    pace.hold(until=5.0)
    assert pace.reserve(1.0, now=0.0) == pytest.approx(5.0)  # nothing before 5
    pace = Pace(per_minute=60, burst=0.0)
    pace.reserve(1.0, now=0.0)
    pace.reserve(1.0, now=0.0)  # booked 1 s ahead at 1/s
    pace.set_rate(120, now=0.0)  # twice as fast: the booked backlog halves
    assert pace.reserve(1.0, now=0.0) == pytest.approx(1.0)


def test_a_slower_rate_stretches_the_waits_of_calls_already_booked() -> None:
    pace = Pace(60, burst=0.0)  # one a second
    goes = [pace.reserve(1.0, now=0.0) for _ in range(5)]
    assert goes == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    pace.set_rate(30, now=0.5)  # half as fast, while the last four sleep
    # each sleeper finds its wait stretched from the cut on, in its order, and the next
    # booking follows the last of them at the new spacing: no hole, no bunching
    woken = [pace.rescheduled(go, since=0.0) for go in goes[1:]]
    assert woken == pytest.approx([1.5, 3.5, 5.5, 7.5])
    assert pace.reserve(1.0, now=0.5) == pytest.approx(9.5 - 0.5)
    # a slowdown before the booking, or after the call was due, does not touch it
    assert pace.rescheduled(4.0, since=0.6) == 4.0
    assert pace.rescheduled(0.4, since=0.0) == 0.4
    pace.set_rate(60, now=0.7)  # a speed-up: sleepers keep their (later) times
    assert pace.rescheduled(7.5, since=5.5) == 7.5


def test_pace_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="per minute"):
        Pace(0)
    with pytest.raises(ValueError, match="burst"):
        Pace(10, burst=-1)


def test_learned_rate_paces_nothing_until_a_429_with_data() -> None:
    learned = LearnedRate(decrease=0.5, window=10.0, cooldown=0.0, min_span=1.0)
    assert learned.reserve(now=0.0) == 0.0
    learned.sent(at=0.0)
    learned.limited(sent_at=0.0, now=0.1)  # nothing got through yet: nothing to learn
    assert learned.pace is None and learned.cuts == 0
    learned.sent(at=0.5)
    learned.limited(sent_at=0.5, now=0.6)  # the one sent before it got a 429 too
    assert learned.pace is None and learned.cuts == 0
    for second in range(1, 10):
        for _ in range(6):  # 6 calls a second went out
            learned.sent(at=float(second))
    learned.sent(at=9.5)
    learned.limited(sent_at=9.5, now=9.6)
    assert learned.cuts == 1
    # 54 got through of those sent since 0.0 (two of them got a 429): 9.5 s, halved
    assert learned.per_minute == pytest.approx(0.5 * 54 / 9.5 * 60)


def test_learned_rate_counts_calls_still_out_at_the_first_429() -> None:
    """50 calls go out in 50 ms and are admitted; the 51st gets a 429 at once, while the
    50 are still out (an admitted call takes the model's latency). They count."""
    learned = LearnedRate(decrease=0.8, window=3.0, cooldown=0.0, min_span=1.0)
    for i in range(51):
        learned.sent(at=i * 0.001)
    learned.limited(sent_at=0.050, now=0.052)
    assert learned.per_minute == pytest.approx(0.8 * 50 * 60)  # a second's worth
    for i in range(100):
        learned.sent(at=1.0 + i * 0.001)  # after the first cut nothing is kept
    assert not learned._sent


def test_learned_rate_cuts_once_per_burst() -> None:
    learned = LearnedRate(decrease=0.5, window=10.0, cooldown=0.0)
    for i in range(20):
        learned.sent(at=i * 0.1)
    learned.limited(sent_at=1.0, now=2.0)
    first = learned.per_minute
    learned.limited(sent_at=1.5, now=2.1)  # sent before the cut: says nothing new
    assert learned.cuts == 1 and learned.per_minute == first
    learned.limited(sent_at=2.5, now=3.0)  # sent after it: the new rate is still too high
    assert learned.cuts == 2 and learned.per_minute == pytest.approx(0.5 * first)


def test_learned_rate_probes_up_only_while_it_holds_calls_back() -> None:
    learned = LearnedRate(decrease=0.5, increase=0.1, window=10.0, cooldown=0.0)
    for i in range(10):
        learned.sent(at=i * 0.1)
    learned.limited(sent_at=1.0, now=1.0)
    base = learned.per_minute
    assert base is not None
    learned.reserve(now=100.0)  # calls rare: the pace held nothing back, no probing
    assert learned.per_minute == pytest.approx(base)
    for _ in range(200):
        learned.reserve(now=100.0)  # a backlog: now every reserve waits
    learned.reserve(now=101.0)
    assert learned.per_minute == pytest.approx(base * 1.1, rel=0.01)


def test_slots_cap_concurrency_and_wake_on_cancel() -> None:
    slots = Slots(2)
    assert slots.acquire() and slots.acquire()
    cancelled = threading.Event()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire(cancelled)))
    waiter.start()
    cancelled.set()
    slots.wake()
    waiter.join(5)
    assert got == [False]
    slots.release()
    assert slots.acquire()
    with pytest.raises(ValueError):
        Slots(0)
