"""Batch slots: taken up to the capacity, given back, and waiters told when one is free."""

from __future__ import annotations

import pytest

from symbatcher.batch_slots import BatchSlots


class Waiter:
    def __init__(self, name: str, told: list[str]) -> None:
        self.name = name
        self.told = told

    def slot_freed(self) -> None:
        self.told.append(self.name)


def test_slots_are_taken_up_to_the_capacity_and_given_back() -> None:
    told: list[str] = []
    slots, waiter = BatchSlots(2), Waiter("a", told)
    assert slots.try_take(waiter) and slots.try_take(waiter)
    assert slots.in_use == 2
    assert not slots.try_take(waiter)
    slots.give_back()
    assert slots.in_use == 1 and told == ["a"]
    assert slots.try_take(waiter) and slots.in_use == 2


def test_every_waiter_is_told_once_in_order_of_arrival_then_forgotten() -> None:
    told: list[str] = []
    slots = BatchSlots(1)
    first, second = Waiter("first", told), Waiter("second", told)
    assert slots.try_take(first)
    assert not slots.try_take(second)
    assert not slots.try_take(first)
    assert not slots.try_take(second)  # still once on the list
    slots.give_back()
    assert told == ["second", "first"] and slots.in_use == 0
    assert slots.try_take(second)
    slots.give_back()  # nobody waits any more
    assert told == ["second", "first"]


def test_giving_back_a_slot_not_taken_is_an_error() -> None:
    slots = BatchSlots(1)
    with pytest.raises(ValueError, match="given back more often than taken"):
        slots.give_back()
    assert slots.in_use == 0


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_a_capacity_must_be_a_positive_integer(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        BatchSlots(capacity)  # type: ignore[arg-type]
