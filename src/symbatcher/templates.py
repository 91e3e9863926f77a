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

import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from symbatcher.overrides import UNCHANGED, EngineOverride

#: modules whose ``prompt_registry`` is cached; absent ones (another symai) are skipped
REGISTRY_MODULES = ("symai.backend.engines.neurosymbolic._prompts",)
#: distinct template sources kept per environment (a registry has a handful)
MAX_TEMPLATES = 256

#: set to 0, false, no or off to turn the cache off where a run is not built in code
ENV_NAME = "SYMBATCHER_CACHE_TEMPLATES"


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


def _make(own: Any) -> Any:
    """Wrap Jinja's own method only; a function someone put there is theirs."""
    return CachedFromString(own) if inspect.ismethod(own) else UNCHANGED


template_cache = EngineOverride("from_string", _make)


@contextmanager
def cached_templates() -> Iterator[None]:
    """Compile symai's prompt templates once for the block. Runs at once share one
    cache; the last to leave puts the original method back, also on an exception."""
    with template_cache.held(*_environments()):
        yield
