"""Compiled prompt templates, kept for the length of a run.

symai 2.2's chat engines (OpenAI, Anthropic, vLLM, llama.cpp and the rest) build their
system prompt with ``PromptRegistry.render``, which calls ``jinja_env.from_string`` and so
parses and compiles the same Jinja template again on every query: about 5 ms of CPU, most
of what a query costs in the client, and what caps one process near 150-200 queries/s.
A compiled template renders the same text every time (it reads the environment's filters
and globals when it renders, and is safe to share between threads), so while a run is
active ``from_string`` on the registries of symai's chat engines compiles each distinct
template source once. The original method is back when the last active run ends.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("symbatcher")

#: modules whose ``prompt_registry`` is cached; absent ones (another symai) are skipped
REGISTRY_MODULES = ("symai.backend.engines.neurosymbolic._prompts",)
#: distinct template sources kept per environment (a registry has a handful)
MAX_TEMPLATES = 256

#: set to 0, false, no or off to turn the cache off where a run is not built in code
ENV_NAME = "SYMBATCHER_CACHE_TEMPLATES"

_lock = threading.Lock()
_users = 0
_installed: list[tuple[Any, CachedFromString]] = []


class CachedFromString:
    """``Environment.from_string`` that compiles each template source once.

    Calls with their own globals or template class go to the original unchanged.
    """

    __slots__ = ("compiled", "lock", "original")

    def __init__(self, original: Callable[..., Any]) -> None:
        self.original = original
        self.compiled: dict[str, Any] = {}
        self.lock = threading.Lock()  # taken on a miss only: workers starting at once
        # would otherwise each compile the same template

    def __call__(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        if globals is not None or template_class is not None or type(source) is not str:
            return self.original(source, globals, template_class)
        template = self.compiled.get(source)
        if template is None:
            with self.lock:
                template = self.compiled.get(source)
                if template is None:
                    template = self.original(source)
                    if len(self.compiled) >= MAX_TEMPLATES:
                        self.compiled.clear()
                    self.compiled[source] = template
        return template


def _environments() -> list[Any]:
    """The Jinja environments of symai's prompt registries that are loaded (an engine
    that uses one has imported it by the time a run has bound it)."""
    found = []
    for name in REGISTRY_MODULES:
        module = sys.modules.get(name)
        registry = getattr(module, "prompt_registry", None)
        env = getattr(registry, "jinja_env", None)
        if env is not None and callable(getattr(env, "from_string", None)):
            found.append(env)
    return found


def _install() -> None:
    """Cache every loaded environment not cached yet (a later run may use an engine
    whose registry an earlier, still active one had not loaded)."""
    done = {id(env) for env, _ in _installed}
    for env in _environments():
        if id(env) in done:
            continue
        if "from_string" in vars(env):
            logger.debug("symbatcher: %r has its own from_string; not caching templates", env)
            continue
        cached = CachedFromString(env.from_string)
        env.from_string = cached
        _installed.append((env, cached))


def _uninstall() -> None:
    while _installed:
        env, cached = _installed.pop()
        if vars(env).get("from_string") is cached:
            del env.from_string
        else:
            logger.warning(
                "symbatcher: %r.from_string was replaced during a run; leaving the new one", env
            )


@contextmanager
def cached_templates() -> Iterator[None]:
    """Compile symai's prompt templates once for the block. Runs at once share one
    cache; the last to leave puts the original method back, also on an exception."""
    global _users
    with _lock:
        _install()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _uninstall()
