"""Argument checks the public constructors share, so they refuse bad input alike."""

from __future__ import annotations

import os
from collections.abc import Mapping


def positive_int(name: str, value: object) -> None:
    """Refuse anything but an int >= 1 (a bool is not a count), naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def env_flag(
    name: str, environ: Mapping[str, str] | None = None, *, given: bool | None = None
) -> bool:
    """A default-on switch: ``given`` if the caller set it, else the environment's (off for
    0, false, no or off)."""
    if given is not None:
        return bool(given)
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    return value not in ("0", "false", "no", "off")
