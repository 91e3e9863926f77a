"""A run config file (YAML or JSON) that declares a batch, validated with pydantic.

Unknown keys, wrong types and missing fields are refused with a message naming the key
(:class:`ConfigError`). ``RunConfig.model_json_schema()`` is the published schema
(``symbatcher config-schema`` prints it; ``schemas/run-config.schema.json`` holds a copy).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from symbatcher.checks import expression_params_problem
from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.errors import SymbatcherError
from symbatcher.local import server_address


class ConfigError(SymbatcherError, ValueError):
    """A run config that cannot be used; the message names the file and the key."""


class EngineSettings(BaseModel):
    """Which engine answers the run's calls, and limits on them (see ``RateLimit``; all off
    by default)."""

    model_config = ConfigDict(extra="forbid")

    rpm: PositiveFloat | None = Field(default=None, description="requests per minute")
    tpm: PositiveFloat | None = Field(default=None, description="tokens per minute")
    max_concurrency: PositiveInt | None = Field(default=None, description="calls at once")
    max_inflight_batches: PositiveInt | None = Field(
        default=None,
        description="batches out at the engine at once; while it is busy, calls gather and "
        "batches fill (for a list-taking engine that serves only so many at once)",
    )
    linger: NonNegativeFloat = Field(
        default=DEFAULT_LINGER,
        description="seconds a call may wait for its batch to fill (under "
        "max_inflight_batches, longer fills batches further)",
    )
    names: list[str] = Field(
        default_factory=lambda: ["neurosymbolic"], description="EngineRepository names to bind"
    )
    url: str | None = Field(
        default=None,
        description="an OpenAI-compatible server (vLLM, llama.cpp) that answers the run's "
        "calls, e.g. http://127.0.0.1:8000: symai's own engine of `kind` pointed at it, under "
        "`names` for the run, instead of the engine symai's config names",
    )
    kind: Literal["vllm", "llamacpp"] = Field(
        default="vllm", description="which of symai's engines talks to `url`"
    )
    model: str | None = Field(
        default=None,
        description="a hosted model by symai's name for it, e.g. deepseek:deepseek-v4-flash "
        "or openai:gpt-5.4-mini: symai's engine for it under `names` for the run, instead of "
        "the engine symai's config names (its key from `api_key_env`)",
    )
    api_key_env: str | None = Field(
        default=None,
        description="the environment variable holding `model`'s API key (default: the "
        "provider's, e.g. DEEPSEEK_API_KEY); the key itself is never stored",
    )
    timeout: PositiveFloat | None = Field(
        default=None,
        description="seconds a request to `url` (default 600; symai's own client has no "
        "limit) or to `model`'s provider may take",
    )

    @field_validator("url")
    @classmethod
    def _a_server_url(cls, url: str | None) -> str | None:
        if url is not None:
            server_address(url)  # a ValueError names the URL
        return url

    @field_validator("model")
    @classmethod
    def _a_known_model(cls, model: str | None) -> str | None:
        from symbatcher.providers import model_problem

        if model is not None and (problem := model_problem(model)):
            raise ValueError(problem)
        return model

    @model_validator(mode="after")
    def _timeout_for_a_url(self) -> EngineSettings:
        if self.url is not None and self.model is not None:
            raise ValueError(
                "url (--engine-url) and model (--model) each name the run's engine; give one"
            )
        if self.timeout is not None and self.url is None and self.model is None:
            raise ValueError(
                "timeout is for the server at url (--engine-timeout for --engine-url) or "
                "model's provider; symai's configured engines take theirs from symai's config"
            )
        if self.api_key_env is not None and self.model is None:
            raise ValueError("api_key_env (--api-key-env) is for model (--model)")
        return self


class WithParams(BaseModel):
    """A model whose ``params`` (an expression's keyword arguments) are checked against its
    ``bind_as``: the run config, and the service's job settings."""

    @field_validator("params", check_fields=False)
    @classmethod
    def _usable_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if problem := expression_params_problem(params, info.data.get("bind_as")):
            raise ValueError(problem)
        return params


class RunConfig(WithParams):
    """One batch: what to run, over which items, and how."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    expression: str | None = Field(
        default=None, description="MODULE:NAME of the Expression (or give it on the command line)"
    )
    items: str | None = Field(
        default=None, description="the data file (.jsonl, .json, .csv) or '-' for stdin"
    )
    items_path: str | None = Field(
        default=None, description="in a JSON file holding an object: the dotted path to the items"
    )
    limit: PositiveInt | None = Field(
        default=None,
        description="run only the first this many records (a trial: without it, or with a "
        "larger one, the run goes on from there)",
    )
    bind_as: str | None = Field(
        default=None, alias="as", description="pass each item as this keyword instead of input="
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments for the expression: given when each worker builds it "
        "and with each item's call (BatchScheduler's **kwargs); JSON values",
    )
    error_handling: Literal["continue", "fail_fast"] = "continue"
    on_bad_line: Literal["stop", "skip"] = "stop"
    workers: PositiveInt = 16
    batch_size: PositiveInt = 5
    max_cost: PositiveFloat | None = Field(default=None, description="budget in USD over all runs")
    retries: PositiveInt = Field(default=3, description="tries per item on transient errors")
    prices: dict[str, tuple[NonNegativeFloat, NonNegativeFloat]] = Field(
        default_factory=dict,
        description="USD per million tokens, [input, output], by model: for a model symai "
        "has no price for (else its calls count as free, and max_cost cannot be kept), or "
        "to override symai's. With engine.url, unnamed models are free.",
    )
    run_dir: str | None = None
    out: str | None = None
    engine: EngineSettings = Field(default_factory=lambda: EngineSettings())


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; relative paths in it are relative to the file."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config {source}: {exc.strerror or exc}") from exc
    try:
        raw: Any = (
            json.loads(text) if source.suffix.lower() == ".json" else yaml.safe_load(text) or {}
        )
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if source.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"{source} is not valid {kind}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {problems(exc, lambda key: f'`{key}`')}") from None
    base = source.parent
    for key in ("items", "run_dir", "out"):
        value = getattr(config, key)
        if value and value != "-" and not Path(value).is_absolute():
            setattr(config, key, str(base / value))
    return config


def problems(exc: ValidationError, name: Callable[[str], str]) -> str:
    """Every validation error, each led by the key it is about (``name`` spells the key:
    as in the file, or as the command-line option); an unknown key names the one meant."""
    found = []
    for error in exc.errors():
        key = name(".".join(str(p) for p in error["loc"]) or "(top)")
        if error["type"] == "extra_forbidden":
            found.append(f"{key}: unknown key{_meant(error['loc'])}")
        else:
            found.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(found)


def _meant(loc: tuple[int | str, ...]) -> str:
    """`` (did you mean `workers`?)`` for a misspelt key of the run config, else ``""``."""
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    keys = [f.alias or key for key, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]) if loc else "", keys, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def items_at(data: Any, dotted: str, source: str) -> list[Any]:
    """The list at ``dotted`` (``"a.b"``) inside a loaded JSON document."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(
                f"{source} has nothing at items_path {dotted!r} (stopped at {part!r})"
            )
        node = node[part]
    if not isinstance(node, list):
        raise ConfigError(f"{source}: items_path {dotted!r} is a {type(node).__name__}, not a list")
    return node


def schema() -> dict[str, Any]:
    return RunConfig.model_json_schema(by_alias=True)
