"""symai's engine for a hosted model named on the command line, its key from the environment.

symai 2.x names hosted models with their provider (``deepseek:deepseek-v4-flash``,
``openai:gpt-5.4-mini``, ``anthropic:claude-sonnet-4-5``) and builds the engine for one in
``DynamicEngine``; its configured engine comes from ``symai.config.json``. A batch that
names its model on the command line (``symbatcher run --model ...``) gets the same engine
symai would build, registered for the run only, with the key read from an environment
variable (never written to the run directory), so a run needs no symai config and
switching models is a flag.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from symbatcher.errors import EngineNotAvailableError
from symbatcher.symai_setup import import_symai


def _mapping() -> dict[str, Any]:
    import_symai()
    from symai.backend.engines.neurosymbolic import ENGINE_MAPPING

    mapping: dict[str, Any] = ENGINE_MAPPING
    return mapping


def known_models() -> list[str]:
    """Every model symai can build an engine for by name."""
    return sorted(_mapping())


def key_variable(model: str) -> str:
    """The environment variable that holds the key for ``model`` unless told otherwise:
    the provider's name, ``DEEPSEEK_API_KEY`` for ``deepseek:...``."""
    provider = model.partition(":")[0]
    return f"{provider.upper().replace('-', '_')}_API_KEY"


def model_problem(model: str) -> str | None:
    """Why symai cannot build an engine for ``model``, naming the nearest it can."""
    known = known_models()
    if model in known:
        return None
    near = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
    if not near and ":" not in model:  # a name without its provider
        near = [k for k in known if k.partition(":")[2] == model]
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    providers = sorted({k.partition(":")[0] for k in known})
    return (
        f"symai has no engine for model {model!r}{hint} (models are named with their "
        f"provider: {', '.join(p + ':...' for p in providers)})"
    )


def hosted_engine(model: str, *, key_env: str | None = None, timeout: float | None = None) -> Any:
    """symai's engine for ``model``, as ``DynamicEngine`` builds it, with the key from
    ``key_env`` (default :func:`key_variable`) and ``timeout`` seconds per request."""
    if problem := model_problem(model):
        raise EngineNotAvailableError(problem)
    variable = key_env or key_variable(model)
    key = os.environ.get(variable)
    if not key:
        raise EngineNotAvailableError(
            f"{variable} is not set: export the API key for {model!r} there, or name the "
            f"variable that holds it (--api-key-env; engine.api_key_env in a run config; "
            f"hosted_engine(model, key_env=...) in Python)"
        )
    options: dict[str, Any] = {} if timeout is None else {"client_timeout": timeout}
    try:
        return _mapping()[model](api_key=key, model=model, **options)
    except Exception as exc:  # symai's own set-up (a tokenizer it downloads, say)
        raise EngineNotAvailableError(
            f"symai could not build its engine for {model!r}: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class CatalogEntry:
    """A model symai can build an engine for, its price and where its key is read."""

    model: str
    input_per_1m: float | None  # USD per 1M tokens; None: symai has no price for it
    output_per_1m: float | None
    key_variable: str
    key_set: bool


def catalog(pattern: str | None = None) -> list[CatalogEntry]:
    """The models symai knows (those whose name holds ``pattern``), by name: what a user
    chooses ``--model`` from."""
    from symbatcher.pricing import symai_pricing

    entries = []
    for model in known_models():
        if pattern and pattern.lower() not in model.lower():
            continue
        price = symai_pricing(model)
        variable = key_variable(model)
        entries.append(
            CatalogEntry(
                model,
                None if price is None else float(price.input),
                None if price is None else float(price.output),
                variable,
                bool(os.environ.get(variable)),
            )
        )
    return entries
