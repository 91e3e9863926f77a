"""The engine a command runs on, ready before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def run_engine(engine: dict[str, Any]) -> Iterator[None]:
    """The run's engine for the block, ready before anything is written: symai's engine for
    the server at ``url`` (asked first) or for the hosted ``model``, registered under
    ``names`` until the block ends; else symai's own engines under ``names`` (each must
    exist)."""
    from symbatcher.binding import available_engine
    from symbatcher.local import serving

    names = engine.get("names") or ["neurosymbolic"]
    if engine.get("url"):
        kind = engine.get("kind") or "vllm"
        with serving(engine["url"], kind, names, timeout=engine.get("timeout")):
            yield
        return
    if engine.get("model"):
        from symbatcher.local import registered
        from symbatcher.providers import hosted_engine

        built = hosted_engine(
            engine["model"], key_env=engine.get("api_key_env"), timeout=engine.get("timeout")
        )
        with registered(built, names):
            yield
        return
    for name in names:
        available_engine(name)
    yield
