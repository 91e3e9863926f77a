"""Inputs and results as JSON, and the fingerprints that tell one dataset from another."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly form: a symai Symbol becomes its value, pydantic models their dump."""
    inner = getattr(value, "value", _MISSING) if _is_symbol(value) else _MISSING
    if inner is not _MISSING:
        return to_jsonable(inner)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            return repr(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON, so equal values give equal text (and fingerprints)."""
    return _ENCODER.encode(value)  # one shared encoder: no set-up per call


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def fingerprint(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _default(value: Any) -> Any:
    converted = to_jsonable(value)
    if converted is value:
        return repr(value)
    return converted


def _is_symbol(value: Any) -> bool:
    for cls in type(value).__mro__:
        if cls.__name__ == "Symbol" and cls.__module__.startswith("symai"):
            return True
    return False


_MISSING = object()
_ENCODER = json.JSONEncoder(
    default=_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
)
