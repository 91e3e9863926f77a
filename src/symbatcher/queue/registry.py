"""The expressions a service may run, by name: a request names one, never a module path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from symbatcher.errors import SymbatcherError

T = TypeVar("T")
ENTRY_POINT_GROUP = "symbatcher.expressions"
logger = logging.getLogger("symbatcher")


class UnknownExpressionError(SymbatcherError, KeyError):
    """A job named an expression nobody registered, or one whose entry point is broken."""

    def __str__(self) -> str:
        return str(self.args[0])


def _describe(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    origin = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point '{point.name} = {point.value}'{origin}"


class ExpressionRegistry:
    """Names -> Expression classes (or instances). Entry points in the
    ``symbatcher.expressions`` group are loaded on first lookup.

    One installed package with a broken entry point must not take the others down: each
    point loads on its own, a failure is logged and kept, and only a lookup of that name
    raises (naming the point and the error). A name registered in code wins over an entry
    point of the same name.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Any] = {}
        self._broken: dict[str, str] = {}  # name -> why its entry point did not load
        self._lock = threading.Lock()
        # loading imports modules that may @register themselves, so not under _lock
        self._load_lock = threading.Lock()
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
            broken = self._broken.get(name)
            known = sorted(self._by_name)
        if target is not None:
            return target
        if broken is not None:
            raise UnknownExpressionError(f"the expression {name!r} could not be loaded: {broken}")
        raise UnknownExpressionError(
            f"no expression registered as {name!r}; registered: {', '.join(known) or 'none'}"
        )

    def names(self) -> list[str]:
        """The names a job may use (not those whose entry point failed to load)."""
        self._load_entry_points()
        with self._lock:
            return sorted(self._by_name)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        with self._load_lock:
            if self._entry_points_loaded:
                return
            for point in entry_points(group=ENTRY_POINT_GROUP):
                self._load(point)
            self._entry_points_loaded = True

    def _load(self, point: EntryPoint) -> None:
        where = _describe(point)
        with self._lock:
            if point.name in self._by_name or point.name in self._broken:
                logger.warning("%s is ignored: the name is taken already", where)
                return
        try:
            target = point.load()
        except Exception as exc:  # an import error in someone's package, say
            self._keep_broken(point.name, f"{where} failed: {type(exc).__name__}: {exc}")
            return
        try:
            self.register(point.name)(target)
        except ValueError as exc:  # a bad name, or the module registered it as another target
            self._keep_broken(point.name, f"{where}: {exc}")

    def _keep_broken(self, name: str, why: str) -> None:
        logger.warning("an expression is not available: %s", why)
        with self._lock:
            if name not in self._by_name:
                self._broken[name] = why


registry = ExpressionRegistry()
register = registry.register
