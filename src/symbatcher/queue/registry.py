"""The expressions a service may run, by name: a request names one, never a module path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from symbatcher.errors import SymbatcherError

T = TypeVar("T")
ENTRY_POINT_GROUP = "symbatcher.expressions"


class UnknownExpressionError(SymbatcherError, KeyError):
    """A job named an expression nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class ExpressionRegistry:
    """Names -> Expression classes (or instances). Entry points in the
    ``symbatcher.expressions`` group are loaded on first lookup."""

    def __init__(self) -> None:
        self._by_name: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """``@register("summarize")`` on an Expression class."""
        if not name or not name.replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(f"an expression name must be a simple identifier, got {name!r}")

        def add(target: T) -> T:
            with self._lock:
                known = self._by_name.get(name)
                if known is not None and known is not target:
                    raise ValueError(f"an expression is registered as {name!r} already: {known}")
                self._by_name[name] = target
            return target

        return add

    def get(self, name: str) -> Any:
        self._load_entry_points()
        with self._lock:
            target = self._by_name.get(name)
            known = sorted(self._by_name)
        if target is None:
            raise UnknownExpressionError(
                f"no expression registered as {name!r}; registered: {', '.join(known) or 'none'}"
            )
        return target

    def names(self) -> list[str]:
        self._load_entry_points()
        with self._lock:
            return sorted(self._by_name)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            self.register(point.name)(point.load())


registry = ExpressionRegistry()
register = registry.register
