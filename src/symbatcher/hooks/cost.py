"""Cost: tokens and USD of every engine call, added to its item and to the run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from symbatcher.errors import HaltingError
from symbatcher.hooks.base import CallContext, Hook, RunContext
from symbatcher.pricing import PriceBook, PriceLike, cost_of, model_of, usage_of

logger = logging.getLogger("symbatcher")


class PricingError(HaltingError):
    """A budget is set but the model's price is unknown, so spending cannot be measured."""


class Cost(Hook):
    """Measures each engine call's usage and prices it.

    ``prices`` maps a model name to USD per million tokens (``(input, output)``, a dict or
    symai's ``ModelPricing``); models not in it are looked up in symai's own tables, and
    ``default`` prices any model found in neither (``pricing.FREE`` for a self-hosted
    server, whose calls have no per-token bill). With ``strict=True`` (what
    :class:`Budget` asks for) a call to an unpriced model fails instead of counting as free.
    """

    def __init__(
        self,
        prices: Mapping[str, PriceLike] | None = None,
        *,
        strict: bool = False,
        default: PriceLike | None = None,
    ) -> None:
        super().__init__()
        self.book = PriceBook(prices, default)
        self.strict = strict
        self._warned: set[str] = set()
        self._seen: set[str] = set()  # the models this run's calls came from
        self._lock = threading.Lock()

    def on_start(self, run: RunContext) -> None:
        with self._lock:
            self._seen.clear()  # a hook may serve several runs, one after another

    def on_end(self, run: RunContext) -> None:
        """A price given for a model no call came from is most likely a misspelt name
        (``gpt-5.4-mini`` for ``openai:gpt-5.4-mini``), while the calls went at another price."""
        with self._lock:
            seen = sorted(self._seen)
        unused = [model for model in self.book.given if model not in self._seen]
        if unused and seen:
            logger.warning(
                "symbatcher: a price was given for %s, but no call of this run came from "
                "%s; its calls came from %s (a price applies to the model's exact name)",
                ", ".join(map(repr, unused)),
                "it" if len(unused) == 1 else "them",
                ", ".join(map(repr, seen)),
            )

    def around_call(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        answer = proceed()
        metadata = answer[1] if isinstance(answer, tuple) and len(answer) == 2 else None
        usage = usage_of(call.engine, metadata)
        if usage is None:
            return answer
        record = call.record
        record.prompt_tokens = usage.prompt_tokens
        record.completion_tokens = usage.completion_tokens
        model = record.model = model_of(call.engine, metadata)
        if model is not None and model not in self._seen:
            with self._lock:
                self._seen.add(model)
        price = self.book.price(model, call.engine)
        if price is not None:
            record.cost = cost_of(usage, price)
        elif self.strict or (call.item is not None and call.item.run.strict_pricing):
            error = PricingError(
                f"no price known for model {model!r}, so the budget cannot be kept; "
                f"pass prices={{{model!r}: (input_usd_per_1M, output_usd_per_1M)}} "
                f"(symbatcher run: --price {model}=INPUT,OUTPUT)"
            )
            if call.item is not None:  # every further call would be paid for and fail too
                run = call.item.run
                if not run.stopped():
                    logger.warning("symbatcher: %s; starting no further items", error)
                run.halt(str(error), "failed")
            raise error
        else:
            self._warn_unpriced(model)
        return answer

    def _warn_unpriced(self, model: str | None) -> None:
        key = str(model)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(
            "symbatcher: no price for model %r; its calls count as free (give one with "
            "prices=, or symbatcher run --price %s=INPUT,OUTPUT, USD per 1M tokens)",
            model,
            model,
        )
