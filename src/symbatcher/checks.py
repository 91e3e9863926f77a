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


_PLAIN = (str, int, float, bool, type(None))


def expression_params_problem(params: Mapping[str, object], bind_as: str | None) -> str | None:
    """Why ``params`` cannot be an expression's keyword arguments, or None.

    They are stored as JSON (``command.json``, the job queue) and given again on resume and
    retry, so a value JSON cannot hold (a YAML date, say) would come back as another value."""
    taken = {"input", bind_as} - {None}
    for key, value in params.items():
        if not key.isidentifier():
            return f"{key!r} is not a keyword argument name"
        if key in taken:
            return f"{key!r} is the keyword each item is passed as; name the parameter otherwise"
        if not _json_plain(value):
            return (
                f"{key!r} holds a {type(value).__name__}; parameters are JSON values (text, "
                f"numbers, true/false, null, lists, mappings): quote it to pass text"
            )
    return None


def _json_plain(value: object) -> bool:
    if isinstance(value, _PLAIN):
        return not isinstance(value, float) or (value == value and abs(value) != float("inf"))
    if isinstance(value, list):
        return all(map(_json_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_plain(v) for k, v in value.items())
    return False
