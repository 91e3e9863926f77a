"""Usage -> tokens -> cost: symai's own usage records and ``ModelPricing`` tables first.

Tokens come from the engine's ``usage_record_from_metadata`` (symai 2.x) and, when an
engine has none, from ``metadata["usage"]`` (OpenAI-style ``prompt_tokens`` /
``completion_tokens`` or ``input_tokens`` / ``output_tokens``). Prices are USD per million
tokens: a user's table wins, else the model's ``pricing`` in symai's provider tables.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from symbatcher.symai_setup import import_symai

import_symai()

from symai.backend.usage import ModelPricing  # noqa: E402

logger = logging.getLogger("symbatcher")

# symai's ModelPricing, (input, output), or {"input": .., "output": ..}; USD per 1M tokens
PriceLike: TypeAlias = Any


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def as_pricing(price: PriceLike) -> ModelPricing:
    """``ModelPricing``, ``(input, output)`` or ``{"input": .., "output": ..}`` per 1M tokens."""
    if isinstance(price, ModelPricing):
        return price
    if isinstance(price, tuple | list) and len(price) == 2:  # a list: read from JSON
        return ModelPricing(input=float(price[0]), output=float(price[1]))
    if isinstance(price, Mapping):
        unknown: set[str] = set(price) - {"input", "output", "cached_input", "cache_write"}
        if unknown or "input" not in price or "output" not in price:
            raise ValueError(
                f"a price needs 'input' and 'output' (USD per 1M tokens), optionally "
                f"'cached_input' and 'cache_write'; got keys {sorted(price)}"
            )
        return ModelPricing(**{k: float(v) for k, v in price.items()})
    raise TypeError(f"a price is ModelPricing, (input, output) or a dict, got {price!r}")


def usage_of(engine: Any, metadata: Any) -> Usage | None:
    """The tokens one engine answer reports, or None if it reports none."""
    if not isinstance(metadata, Mapping):
        return None
    record_of: Callable[[Any], Any] | None = getattr(engine, "usage_record_from_metadata", None)
    if record_of is not None:
        try:
            record = record_of(dict(metadata))
        except Exception:  # an engine without usage in this answer
            record = None
        if record is not None:
            cached = int((record.prompt_breakdown or {}).get("cached_tokens", 0) or 0)
            return Usage(int(record.prompt_tokens), int(record.completion_tokens), cached)
    usage = metadata.get("usage")
    if usage is None:
        return None
    return Usage(
        _count(usage, "prompt_tokens", "input_tokens"),
        _count(usage, "completion_tokens", "output_tokens"),
    )


def _count(usage: Any, *names: str) -> int:
    """The first of ``names`` that ``usage`` (a mapping or an object) has."""
    for name in names:
        value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
        if value is not None:
            return int(value)
    return 0


def model_of(engine: Any, metadata: Any) -> str | None:
    """The model an answer came from: the answer's word, else the engine's. symai's vLLM
    engine keeps the served model's id in ``server_model``; its ``model`` is just "vllm"."""
    if isinstance(metadata, Mapping) and isinstance(metadata.get("model"), str):
        return str(metadata["model"])
    for attribute in ("server_model", "model"):
        model = getattr(engine, attribute, None)
        if isinstance(model, str) and model:
            return model
    return None


def cost_of(usage: Usage, price: ModelPricing) -> float:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    total: float = (
        (usage.prompt_tokens - cached) * price.input
        + cached * cached_rate
        + usage.completion_tokens * price.output
    ) / 1_000_000
    return total


#: the price of a self-hosted server's calls unless the user names one: no per-token bill
FREE = ModelPricing(input=0.0, output=0.0)


class PriceBook:
    """Finds a model's price: the user's table, then symai's tables, then ``default``
    (none: the model is unpriced); cached per model."""

    def __init__(
        self, prices: Mapping[str, PriceLike] | None = None, default: PriceLike | None = None
    ) -> None:
        self._user = {model: as_pricing(p) for model, p in (prices or {}).items()}
        self._default = None if default is None else as_pricing(default)
        self._found: dict[str, ModelPricing | None] = {}
        self._lock = threading.Lock()

    @property
    def given(self) -> tuple[str, ...]:
        """The models the user named a price for."""
        return tuple(self._user)

    def price(self, model: str | None, engine: Any = None) -> ModelPricing | None:
        if model is None:
            return self._default
        if model in self._user:
            return self._user[model]
        with self._lock:
            if model not in self._found:
                self._found[model] = symai_pricing(model, engine)
            found = self._found[model]
        return self._default if found is None else found


def symai_pricing(model: str, engine: Any = None) -> ModelPricing | None:
    """``pricing`` of ``model`` in symai's provider tables (the engine's provider first)."""
    import symai.backend.engines.neurosymbolic as providers

    names = [m.name for m in pkgutil.iter_modules(providers.__path__) if m.ispkg]
    own = type(engine).__module__.split(".") if engine is not None else []
    names.sort(key=lambda name: name not in own)
    for name in names:
        try:
            module = importlib.import_module(f"{providers.__name__}.{name}.models")
        except ImportError:
            continue
        for attr in dir(module):
            if not attr.endswith("_model_spec_for"):
                continue
            try:
                spec = getattr(module, attr)(model)
            except Exception:
                continue
            pricing = getattr(spec, "pricing", None)
            if isinstance(pricing, ModelPricing):
                return pricing
    return None
