"""The option types and option groups the commands share, and which option a run
config key is."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from symbatcher.errors import CommandError
from symbatcher.local import KINDS

#: the command-line option of a run config key whose option is not its name
OPTION_OF = {
    "params": "--param",
    "prices": "--price",
    "engine.rpm": "--rpm",
    "engine.tpm": "--tpm",
    "engine.max_concurrency": "--max-concurrency",
    "engine.model": "--model",
    "engine.api_key_env": "--api-key-env",
    "engine": "the engine options",  # a rule across them (url or model, say)
}


PROGRESS_HELP = "auto: a bar on a terminal, else a line every 30 s; on: the bar; off: neither"


def engine_options(
    parser: argparse.ArgumentParser,
    url_help: str,
    *,
    kind: bool = True,
    kind_default: str | None = "vllm",
    hosted: bool = True,
) -> None:
    """``--engine-url``, ``--engine-kind`` and ``--engine-timeout``: a self-hosted server
    and symai's own engine for it; ``--model`` and ``--api-key-env``: a hosted model by
    symai's name for it. The same in every command that calls an engine."""
    parser.add_argument("--engine-url", type=server_url, help=url_help)
    if kind:
        parser.add_argument(
            "--engine-kind",
            choices=KINDS,
            default=kind_default,
            help="the server behind --engine-url (vllm)",
        )
    if hosted:
        parser.add_argument(
            "--model",
            help="instead: a hosted model by symai's name for it, e.g. "
            "deepseek:deepseek-v4-flash or openai:gpt-5.4-mini (symai's engine for it, no "
            "symai config needed)",
        )
        parser.add_argument(
            "--api-key-env",
            metavar="VAR",
            help="the environment variable holding --model's API key (default: the "
            "provider's, e.g. DEEPSEEK_API_KEY); the key is never written anywhere",
        )
    parser.add_argument("--engine-timeout", type=timeout_seconds, help=TIMEOUT_HELP)


TIMEOUT_HELP = (
    "seconds a request to --engine-url (or to a model's provider: --model's, a service "
    "job's) may take before it fails "
    "and is retried (--engine-url's default 600; symai's own client would wait on a "
    "stalled server forever)"
)


def positive_number(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number of ``unit`` above 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be a number of {unit} > 0, got {text}")
        return value

    return parse


timeout_seconds = positive_number("seconds")


def check_engine_options(args: argparse.Namespace) -> None:
    """The engine options by the run config's own rules (one engine named, a timeout or a
    key variable only with what they are for, a model symai knows), for the commands that
    take them without a run config."""
    from pydantic import ValidationError

    from symbatcher.config import EngineSettings, problems

    given = {key: value for key, value in engine_of(args).items() if value is not None}
    try:
        EngineSettings.model_validate(given)
    except ValidationError as exc:
        raise CommandError(problems(exc, _engine_option)) from None


def _engine_option(key: str) -> str:
    """The option of an ``EngineSettings`` key; its rules across keys are the engine's."""
    return option_of("engine" if key == "(top)" else f"engine.{key}")


def engine_of(args: argparse.Namespace) -> dict[str, Any]:
    """The engine a command's options name, as a run config's ``engine`` holds it."""
    return {
        "url": args.engine_url,
        "kind": getattr(args, "engine_kind", None),
        "model": getattr(args, "model", None),
        "api_key_env": getattr(args, "api_key_env", None),
        "timeout": args.engine_timeout,
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def option_of(key: str) -> str:
    """The command-line option of a run config key (``engine.url`` -> ``--engine-url``)."""
    head = key.split(".")[0]
    named = OPTION_OF.get(key) or (OPTION_OF.get(head) if head in ("params", "prices") else None)
    return named or "--" + key.replace("_", "-").replace(".", "-")


def expression_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE as JSON when it is JSON, so ``n=3`` is a number, ``style=short``
    text, without quoting in the shell."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def model_price(text: str) -> tuple[str, tuple[float, float]]:
    """``MODEL=INPUT,OUTPUT`` (USD per 1M tokens) as ``(model, (input, output))``."""
    model, _, rates = text.rpartition("=")
    parts = rates.split(",")
    try:
        pair = (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        pair = None
    if not model or pair is None or not all(0 <= rate < float("inf") for rate in pair):
        raise argparse.ArgumentTypeError(
            f"expected MODEL=INPUT,OUTPUT with two USD amounts >= 0 per 1M tokens, "
            f"e.g. gpt-4o=2.5,10; got {text!r}"
        )
    return model, pair


def server_url(text: str) -> str:
    from symbatcher.local import server_address

    try:
        server_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
