"""The bundled example: a two-call review digest over 1,000 bundled reviews."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from symbatcher.symai_setup import import_symai

import_symai()

from symai import Expression, Symbol  # noqa: E402


class ReviewDigest(Expression):  # type: ignore[misc]
    """Summarise a customer review, then label the summary's sentiment: two dependent calls."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        summary = Symbol(input).query("Summarize this customer review in one sentence", **kwargs)
        return summary.query(
            "Label the sentiment of this summary as positive, negative or mixed", **kwargs
        )


def demo_reviews(limit: int | None = None) -> Iterator[str]:
    """The bundled reviews' texts, streamed from the package data."""
    source = resources.files("symbatcher") / "data" / "reviews.jsonl"
    with source.open("r", encoding="utf-8") as lines:
        for count, line in enumerate(lines):
            if limit is not None and count >= limit:
                return
            yield json.loads(line)["text"]


def demo_size() -> int:
    return sum(1 for _ in demo_reviews())
