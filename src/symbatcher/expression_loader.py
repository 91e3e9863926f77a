"""The expression a command or a service job names (``MODULE:NAME``), and the wrapper that
gives it each item."""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path
from typing import Any

from symbatcher.errors import CommandError


def load_expression(
    spec: str, directories: list[str] | None = None, params: dict[str, Any] | None = None
) -> Any:
    """``MODULE:NAME`` -> the Expression class (or instance) it names; modules in
    ``directories`` (the current one unless given: ``retry`` gives those ``run`` had; a run
    config's own comes after it) import, as with ``python -m``. A class must be buildable
    with ``params``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CommandError(f"expected MODULE:NAME for the expression, got {spec!r}")
    if directories is None and "" in sys.path:
        directories = []  # `python -m symbatcher`: the current directory is there already
    added = [d for d in dict.fromkeys(directories or [str(Path.cwd())]) if d not in sys.path]
    sys.path[0:0] = added  # as `python -m` would: modules beside you import
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import {module_name!r}: {exc}") from exc
    finally:
        for directory in added:
            if directory in sys.path:
                sys.path.remove(directory)
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            where = getattr(module, "__file__", None) or "a module without a file"
            names = [n for n in dir(target) if not n.startswith("_")]
            near = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CommandError(f"{module_name!r} ({where}) has no {attribute!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise CommandError(f"{spec} is not an Expression class or instance")
    from symbatcher.scheduler import build_problem

    params = params or {}
    if problem := build_problem(target, params):  # each worker builds one: can it?
        given = f"the parameters {', '.join(params)}" if params else "no arguments"
        raise CommandError(
            f"{spec} cannot be built with {given}, as each worker builds it ({problem}); "
            f"pass its parameters with --param KEY=VALUE (params: in a config), give them "
            f"defaults, or name an instance of it"
        )
    return target


def bound_expression(
    target: Any, bind_as: str | None, params: dict[str, Any] | None = None
) -> type:
    """An Expression class that hands each item to ``target`` (as ``input=``, or as
    ``bind_as=``) and turns a bad input record into that item's failure. A class ``target``
    is built with those of ``params`` its ``__init__`` names, as the scheduler would."""
    from symai import Expression

    from symbatcher.data import BadRecord
    from symbatcher.scheduler import init_kwargs

    built_with = init_kwargs(target, params or {}) if isinstance(target, type) else {}

    class Bound(Expression):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = target(**built_with) if isinstance(target, type) else target

        def forward(self, input: Any, **kwargs: Any) -> Any:
            if isinstance(input, BadRecord):
                raise input.error()
            if bind_as is None:
                return self.inner(input=input, **kwargs)
            return self.inner(**{bind_as: input}, **kwargs)

    # the run's expression fingerprint names the user's expression, not this wrapper
    cls = target if isinstance(target, type) else type(target)
    Bound.__module__ = cls.__module__
    Bound.__qualname__ = cls.__qualname__ + (f"[as={bind_as}]" if bind_as else "")
    return Bound
