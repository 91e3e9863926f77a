"""The expressions of the original symbatcher test suite, for symai 2.x."""

from __future__ import annotations

import time
from typing import Any

from symai import Expression, Symbol


class TestExpression(Expression):
    __test__ = False

    def forward(self, input: Any, **kwargs: Any) -> Any:
        return Symbol(input).query("Summarize this input", **kwargs)


class NestedExpression(Expression):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test_expression = TestExpression()

    def forward(self, input: Any, **kwargs: Any) -> Any:
        result = self.test_expression(input, **kwargs)
        return Symbol(result).query("Elaborate on this result", **kwargs)


class DoubleNestedExpression(Expression):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nested = NestedExpression()
        self.test_expression = TestExpression()

    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = self.nested(input, **kwargs)
        second = self.test_expression(input, **kwargs)
        return Symbol(f"{first} | {second}").query("Combine these results", **kwargs)


class ConditionalExpression(Expression):
    def forward(self, input: Any, **kwargs: Any) -> Any:
        if len(str(input)) > 10:
            return Symbol(input).query("Analyze this long input", **kwargs)
        return Symbol(input).query("Briefly comment on this short input", **kwargs)


class SlowExpression(Expression):
    """Spends ``delay`` seconds of its own before calling the engine (client-side work)."""

    def __init__(self, delay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def forward(self, input: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)  # stands for slow client-side work, not synchronisation
        return Symbol(input).query("Summarize this input", **kwargs)


class DoubleNestedExpressionSlow(Expression):
    def __init__(self, delay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slow = SlowExpression(delay=delay)
        self.nested = NestedExpression()

    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = self.slow(input, **kwargs)
        second = self.nested(input, **kwargs)
        return Symbol(f"{first} | {second}").query("Synthesize these results", **kwargs)


class ConditionalSlowExpression(Expression):
    def __init__(self, delay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slow = SlowExpression(delay=delay)

    def forward(self, input: Any, **kwargs: Any) -> Any:
        if len(str(input)) > 10:
            return self.slow(input, **kwargs)
        return Symbol(input).query("Briefly comment on this short input", **kwargs)


class RandomErrorExpression(Expression):
    """Raises before reaching the engine for inputs containing 'boom'."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        if "boom" in str(input):
            raise ValueError(f"refusing {input}")
        return Symbol(input).query("Summarize this input", **kwargs)


class PostProcessErrorExpression(Expression):
    """Fails after the engine answered, while post-processing its answer."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        answer = Symbol(input).query("Summarize this input", **kwargs)
        if "late" in str(input):
            raise KeyError(f"post-processing {input}")
        return answer
