"""Inputs and results as JSON, and the fingerprints that tell one dataset from another."""

from __future__ import annotations

import functools
import hashlib
import json
from json.encoder import encode_basestring
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly form: a symai Symbol becomes its value, pydantic models their dump."""
    if type(value) in _PLAIN:  # the common case, once per item: no further checks
        return value
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
    if type(value) is str:
        return _encode_str(value)
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
    """Without ``isinstance``: symai's metaclass makes that cost two ``str(class)``, and
    symai makes a class per Symbol, so there is no type to remember either."""
    return _symbol_class() in type(value).__mro__


@functools.cache
def _symbol_class() -> type:
    from symai.symbol import Symbol  # here: importing the codec must not configure symai

    symbol: type = Symbol
    return symbol


_MISSING = object()
_PLAIN = frozenset({str, int, float, bool, type(None)})
_encode_str = encode_basestring  # what the encoder does with a str, without the encoder
_ENCODER = json.JSONEncoder(
    default=_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
)
