"""EngineOverride: a setting shared by overlapping runs, put back by the last one."""

from __future__ import annotations

from typing import Any

from symbatcher.hooks.overrides import UNCHANGED, EngineOverride


class Engine:
    def __init__(self, retries: Any) -> None:
        self.retries = retries


def test_the_last_run_puts_the_engines_own_value_back_and_releases_once() -> None:
    released: list[Any] = []
    override = EngineOverride("retries", lambda own: f"set over {own}", released.append)
    engine = Engine(2)
    override.apply(engine)
    override.apply(engine)  # a second run on the same engine shares the setting
    assert engine.retries == "set over 2"
    override.restore(engine)
    assert engine.retries == "set over 2" and released == []  # the other run still needs it
    override.restore(engine)
    assert engine.retries == 2 and released == ["set over 2"]
    override.restore(engine)  # once more: nothing held, nothing changes
    assert engine.retries == 2 and released == ["set over 2"]


def test_engines_without_the_attribute_or_declined_are_left_alone() -> None:
    override = EngineOverride("retries", lambda own: UNCHANGED if own is not None else 0)
    mine = Engine("mine")
    override.apply(mine)
    override.apply(object())
    assert mine.retries == "mine"
    override.restore(mine)
    assert mine.retries == "mine"
