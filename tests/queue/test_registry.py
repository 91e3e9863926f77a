"""Registered expressions: names only, clear errors."""

from __future__ import annotations

import pytest

from symbatcher.queue.registry import ExpressionRegistry, UnknownExpressionError


def test_register_and_look_up() -> None:
    names = ExpressionRegistry()

    @names.register("summarize")
    class Summarize:
        pass

    assert names.get("summarize") is Summarize
    assert "summarize" in names.names()
    with pytest.raises(UnknownExpressionError, match="registered: summarize"):
        names.get("os.system")
    with pytest.raises(ValueError, match="registered as 'summarize' already"):
        names.register("summarize")(object)
    with pytest.raises(ValueError, match="simple identifier"):
        names.register("a b")
