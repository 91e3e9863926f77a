"""Engine settings a run changes for its duration, shared by runs that overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: what ``make`` returns to leave an engine as it is
UNCHANGED: Any = object()


class EngineOverride:
    """Sets one attribute of an engine while runs need it: the first run to ask sets it,
    later ones share it, and the last one to finish puts the engine's own value back (and
    hands the value it set to ``release``). Engines are shared by every run in the process,
    so a run must never restore a value another run still relies on."""

    def __init__(
        self,
        attribute: str,
        make: Callable[[Any], Any],
        release: Callable[[Any], None] | None = None,
    ) -> None:
        self.attribute = attribute
        self._make = make
        self._release = release
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Any, Any, Any, int]] = {}  # engine, own, set, runs

    def apply(self, engine: Any) -> None:
        if not hasattr(engine, self.attribute):
            return
        with self._lock:
            held = self._held.get(id(engine))
            if held is not None:
                self._held[id(engine)] = (*held[:3], held[3] + 1)
                return
            own = getattr(engine, self.attribute)
            value = self._make(own)
            if value is UNCHANGED:
                return
            setattr(engine, self.attribute, value)
            self._held[id(engine)] = (engine, own, value, 1)

    def restore(self, engine: Any) -> None:
        with self._lock:
            held = self._held.get(id(engine))
            if held is None:
                return
            if held[3] > 1:
                self._held[id(engine)] = (*held[:3], held[3] - 1)
                return
            del self._held[id(engine)]
            setattr(engine, self.attribute, held[1])
        if self._release is not None:
            self._release(held[2])
