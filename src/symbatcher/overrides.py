"""Settings a run changes on shared symai objects for its duration, shared by runs that
overlap: an engine's attributes (``client_max_retries``, ``transport_client``), the
method that compiles prompt templates (``templates.py``) and ``EngineRepository``'s search
for a DynamicEngine block (``engine_lookup.py``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("symbatcher")

#: what ``make`` returns to leave an object as it is
UNCHANGED: Any = object()


class EngineOverride:
    """Sets one attribute of a shared object while runs need it: the first run to ask sets
    it, later ones share it, and the last one to finish puts the object as it was (the
    own value back, or the instance attribute removed where the class provided it) and
    hands the value it set to ``release``. Objects are shared by every run in the process,
    so a run must never restore a value another run still relies on; and a value someone
    else put there meanwhile is theirs, so it is left alone."""

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
        # by id: the object, its own value, whether that was its own attribute, the value
        # set, how many runs hold it
        self._held: dict[int, tuple[Any, Any, bool, Any, int]] = {}

    def apply(self, engine: Any) -> bool:
        """Set (or share) the value; True if the caller now holds it and must ``restore``.
        A caller that holds nothing must not restore: it would release another run's hold."""
        if not hasattr(engine, self.attribute):
            return False
        with self._lock:
            held = self._held.get(id(engine))
            if held is not None:
                self._held[id(engine)] = (*held[:4], held[4] + 1)
                return True
            own = getattr(engine, self.attribute)
            value = self._make(own)
            if value is UNCHANGED:
                return False
            in_instance = self.attribute in getattr(engine, "__dict__", ())
            if in_instance and isinstance(vars(engine)[self.attribute], staticmethod):
                # a class's static method (EngineRepository.get): set as one, and put the
                # descriptor back, or symai's ``self.get(name)`` would pass ``self``
                own, value = vars(engine)[self.attribute], staticmethod(value)
            setattr(engine, self.attribute, value)
            self._held[id(engine)] = (engine, own, in_instance, value, 1)
            return True

    @contextmanager
    def held(self, *engines: Any) -> Iterator[None]:
        """Apply to each object for the block; restore those held, also on an exception."""
        holding: list[Any] = []
        try:
            for engine in engines:
                if self.apply(engine):
                    holding.append(engine)
            yield
        finally:
            for engine in reversed(holding):
                self.restore(engine)

    def restore(self, engine: Any) -> None:
        with self._lock:
            held = self._held.get(id(engine))
            if held is None:
                return
            if held[4] > 1:
                self._held[id(engine)] = (*held[:4], held[4] - 1)
                return
            del self._held[id(engine)]
            _, own, in_instance, value, _ = held
            if _current(engine, self.attribute) is not value:
                logger.warning(
                    "symbatcher: %r.%s was replaced during a run; leaving the new one",
                    engine,
                    self.attribute,
                )
            elif in_instance:
                setattr(engine, self.attribute, own)
            else:
                delattr(engine, self.attribute)
        if self._release is not None:
            self._release(value)


def _current(engine: Any, attribute: str) -> Any:
    """The attribute as set: a static method's descriptor, not the function it gives."""
    raw = getattr(engine, "__dict__", {}).get(attribute)
    return raw if isinstance(raw, staticmethod) else getattr(engine, attribute, None)
