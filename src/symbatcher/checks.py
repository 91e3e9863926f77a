"""Argument checks the public constructors share, so they refuse bad input alike."""

from __future__ import annotations


def positive_int(name: str, value: object) -> None:
    """Refuse anything but an int >= 1 (a bool is not a count), naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
