"""Inputs and results as JSON, and the fingerprints that tell one dataset from another."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import json
import re
import types
import uuid
from json.encoder import encode_basestring
from pathlib import PurePath
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly form, the same in every process: a resumed run compares the
    fingerprints of its inputs and its expression's parameters with those stored, so a
    form that changed from one process to the next (a set's order, an address in a
    ``repr``) refused every resume. A symai Symbol becomes its value, pydantic models and
    dataclasses their fields, sets sorted lists, dates ISO text; anything else its
    ``repr`` without addresses."""
    if type(value) in _PLAIN:  # the common case, once per item: no further checks
        return value
    inner = getattr(value, "value", _MISSING) if _is_symbol(value) else _MISSING
    if inner is not _MISSING:
        return to_jsonable(inner)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json")
        except Exception:
            return _repr(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=dumps)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime.date | datetime.time):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, PurePath | uuid.UUID | decimal.Decimal):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist) and not isinstance(value, type):
        try:
            return to_jsonable(tolist())
        except Exception:
            return _repr(value)
    return _repr(value)


def _repr(value: Any) -> str:
    """``repr`` without the ``at 0x...`` of default reprs (functions, classes' instances):
    an address differs from one process to the next."""
    if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return f"{value.__module__}.{value.__qualname__}"
    return _ADDRESS.sub("", repr(value))


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON, so equal values give equal text (and fingerprints)."""
    if type(value) is str:
        return _encode_str(value)
    return _ENCODER.encode(value)  # one shared encoder: no set-up per call


def dumps_ordered(value: Any) -> str:
    """Compact JSON with dict keys in their own order: what is stored and shown (a CSV's
    columns as the file had them), where :func:`dumps` is for comparing."""
    if type(value) is str:
        return _encode_str(value)
    return _ORDERED.encode(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def fingerprint(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _default(value: Any) -> Any:
    converted = to_jsonable(value)
    if converted is value:
        return _repr(value)
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
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PLAIN = frozenset({str, int, float, bool, type(None)})
_encode_str = encode_basestring  # what the encoder does with a str, without the encoder
_ENCODER = json.JSONEncoder(
    default=_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
)
_ORDERED = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False)
