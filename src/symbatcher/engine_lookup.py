"""symai's per-query lookup of a ``DynamicEngine`` block, routed into the run and done
cheaper for the length of a run.

symai 2.2's ``EngineRepository.get`` runs on every query and first asks
``get_dynamic_engine_instance`` whether a ``with DynamicEngine(...)`` block is active; if
so, it hands out that block's engine, past the registry and so past the run's binding: the
calls of an expression that switches models for a step went to the provider unbatched,
uncounted and uncosted (a budget did not see them). While runs are active the method's
answer is routed (:func:`symbatcher.binding.dynamic_binding`), so those calls are the
item's like any other.

Unless the context variable answers, symai's lookup walks every frame of the calling
thread, copies its locals and tests each value with ``isinstance(value, DynamicEngine)``,
which goes through ``SymbolMeta.__instancecheck__`` in Python and renders two class names:
about 1 us a local, 54 us a query from a worker's stack (68 in a plain loop), 5-10 % of
what a query costs symai with a simulated engine.

Most locals are ints, strings, dicts, lists, functions and the like. A value whose type
is exactly one of those built-in types is never a ``DynamicEngine`` by symai's test either
(its class name is not DynamicEngine's and it subclasses nothing of symai's), so while a
run is active the walk skips such values and tests every other value exactly as symai
does (26 us a query). The answer is the same on every stack; only the work differs.

The fast walk replaces only symai's own method, recognised by its source text, so a
symai that changes the lookup keeps its own walk. The last active run puts the original
back.

A run that brings its own engine (``BatchScheduler({"neurosymbolic": engine})``) leaves the
registry alone: while it is active, ``EngineRepository.get`` hands that engine's binding to
the run's threads only, so runs with different engines (models) share one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from symbatcher.binding import DYNAMIC_NAMES, current_route, dynamic_binding
from symbatcher.overrides import EngineOverride

#: set to 0, false, no or off to keep symai's own lookup where a run is not built in code
ENV_NAME = "SYMBATCHER_FAST_LOOKUP"

#: sha256 of ``inspect.getsource(EngineRepository.get_dynamic_engine_instance)`` in the
#: symai releases this walk mirrors (2.2.0)
KNOWN_SOURCES = frozenset({"10b383270eff3ff139603a7fbae923357048c173e6e9808fcbd315f4d5a460fa"})

#: exact built-in types no instance of which can pass symai's ``isinstance`` test against a
#: Symbol class (``__class__`` of their instances is their type; they subclass no Symbol)
_NEVER_AN_ENGINE = frozenset(
    {
        str,
        int,
        float,
        complex,
        bool,
        type(None),
        bytes,
        bytearray,
        dict,
        list,
        tuple,
        set,
        frozenset,
        type,
        types.FunctionType,
        types.MethodType,
        types.BuiltinFunctionType,
        types.CodeType,
        types.FrameType,
        types.ModuleType,
        types.CellType,
    }
)
_NAMES_OF_SKIPPED = frozenset(str(t) for t in _NEVER_AN_ENGINE)


def _source_hash(method: Any) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(method).encode()).hexdigest()
    except (OSError, TypeError):  # no source installed, or not a function
        return None


def fast_lookup(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """symai 2.2's ``get_dynamic_engine_instance`` with the skip; ``original`` answers
    when symai's classes are not what this expects."""
    from symai.context import CURRENT_ENGINE_VAR

    symai_logger = logging.getLogger("symai.functional")  # where symai's own walk logs
    never = _NEVER_AN_ENGINE

    def get_dynamic_engine_instance(self: Any) -> Any:
        # 1) as symai: the context variable first
        try:
            eng = CURRENT_ENGINE_VAR.get()
            if eng is not None:
                return eng
        except Exception:
            pass
        from symai.components import DynamicEngine

        if str(DynamicEngine) in _NAMES_OF_SKIPPED:  # a renamed class: symai's test decides
            return original(self)
        # 2) as symai: the calling thread's frames, innermost first. Not this one (no local
        # here can be an entered DynamicEngine): on Python < 3.13 reading a frame's
        # ``f_locals`` caches them on the frame, so this frame would hold itself through
        # its ``frame`` local, a cycle that kept the whole stack above it for the cyclic GC
        try:
            frame: types.FrameType | None = sys._getframe(1)
        except Exception:
            return None
        while frame:
            try:
                frame_locals = frame.f_locals
                locals_copy = (
                    frame_locals.copy() if hasattr(frame_locals, "copy") else dict(frame_locals)
                )
            except Exception:
                symai_logger.warning(
                    "Unexpected failure copying frame locals while resolving DynamicEngine."
                )
                locals_copy = {}
            for value in locals_copy.values():
                if type(value) in never:
                    continue
                if isinstance(value, DynamicEngine) and getattr(value, "_entered", False):
                    return value.engine_instance
            frame = frame.f_back
        return None

    get_dynamic_engine_instance.__wrapped__ = original  # type: ignore[attr-defined]
    return get_dynamic_engine_instance


class _Fast:
    """How many active runs asked for the fast walk (symai's own walk serves the others)."""

    runs = 0
    lock = threading.Lock()


def _make(own: Any) -> Any:
    """symai's method, its result routed (:func:`dynamic_binding`); while a run that asked
    for it is active, the fast walk instead of symai's own, if the method is symai's (a
    function someone else put there, or another symai's, walks as it does)."""
    fast = fast_lookup(own) if _source_hash(own) in KNOWN_SOURCES else None

    def get_dynamic_engine_instance(self: Any) -> Any:
        engine = (fast if fast is not None and _Fast.runs else own)(self)
        return None if engine is None else dynamic_binding(engine)

    get_dynamic_engine_instance.__wrapped__ = own  # type: ignore[attr-defined]
    return get_dynamic_engine_instance


#: on ``EngineRepository`` (the class: its method serves every instance)
lookup_override = EngineOverride("get_dynamic_engine_instance", _make)


@contextmanager
def dynamic_engines_routed(fast: bool = True) -> Iterator[None]:
    """For the block, a DynamicEngine block's engine, looked up from a run's thread, makes
    that run's calls; with ``fast``, the lookup skips the per-local cost too. Runs at once
    share it; the last to leave puts symai's method back, also on an exception."""
    from symai.functional import EngineRepository

    with lookup_override.held(EngineRepository):
        if fast:
            with _Fast.lock:
                _Fast.runs += 1
        try:
            yield
        finally:
            if fast:
                with _Fast.lock:
                    _Fast.runs -= 1


def _routed_get(own: Callable[..., Any]) -> Callable[..., Any]:
    """symai's ``EngineRepository.get``, except that on a thread of a run that brought its
    own engine under the name, that engine's binding; a ``DynamicEngine`` block still
    comes first, as in symai's own."""
    from symai.functional import EngineRepository  # here, not per query

    def get(engine_name: str, *args: Any, **kwargs: Any) -> Any:
        route = current_route()
        binding = route.own.get(engine_name) if route is not None else None
        if binding is None:
            return own(engine_name, *args, **kwargs)
        if engine_name in DYNAMIC_NAMES:
            block = EngineRepository().get_dynamic_engine_instance()
            if block is not None:
                return block
        return binding

    get.__wrapped__ = own  # type: ignore[attr-defined]
    return get


#: on ``EngineRepository``: its static ``get``, which every query goes through
get_override = EngineOverride("get", _routed_get)


@contextmanager
def own_engines_routed() -> Iterator[None]:
    """For the block, symai's lookup hands a run's own engines to that run's threads (every
    other thread gets the registry's, as before). Runs at once share it; the last to leave
    puts symai's ``get`` back, also on an exception."""
    from symai.functional import EngineRepository

    with get_override.held(EngineRepository):
        yield


def fast_engine_lookup() -> contextlib.AbstractContextManager[None]:
    """symai's dynamic-engine lookup without the per-local cost, for the block."""
    return dynamic_engines_routed(fast=True)
