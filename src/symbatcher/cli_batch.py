"""``symbatcher run``, ``status``, ``retry`` and ``export``: durable batch runs from a shell.

A run directory holds the run's state (``state.sqlite``, see :mod:`symbatcher.store`) and
``command.json``, what ``run`` was asked to do, so ``retry`` and a second ``run`` of the
same directory need nothing else. Running the same command again resumes: finished items
are skipped, pending and interrupted ones run.

Exit codes: 0 every item succeeded; 1 some items failed; 2 a usage or set-up error;
3 the input has bad records (nothing ran); 4 the budget stopped the run (the rest stays
pending); 130 interrupted (Ctrl-C: resume by running the same command).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.dollars import usd
from symbatcher.durations import spoken
from symbatcher.errors import SymbatcherError
from symbatcher.local import KINDS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_BUDGET = 0, 1, 2, 3, 4
COMMAND_FILE = "command.json"
STDIN_COPY = "input.jsonl"
SHOW_BAD = 20
SHOW_ERROR_TYPES = 5
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


class CommandError(SymbatcherError):
    """A command cannot start: the message says what to change."""


def add_commands(commands: Any) -> None:
    """The run/status/retry/export subcommands on the ``symbatcher`` parser."""
    run = commands.add_parser("run", help="run an Expression over a data file (resumable)")
    run.add_argument("expression", nargs="?", help="MODULE:NAME, e.g. mypkg.pipelines:Summarize")
    run.add_argument("data", nargs="?", help="a .jsonl, .json (array) or .csv file, or -")
    run.add_argument("--config", help="a run config file (YAML or JSON); options here win")
    run.add_argument("--run-dir", help="state (default ./symbatcher-run)")
    run.add_argument(
        "--out", help="write the results here at the end (.jsonl or .csv; - for stdout)"
    )
    run.add_argument("--format", choices=("jsonl", "json", "csv"), help="DATA's format")
    run.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="run only the first N records, to try the expression and see what the whole "
        "would cost; the same command without it (or with a larger N) goes on from there",
    )
    run.add_argument("--workers", type=int, help="concurrent items (default 16)")
    run.add_argument("--batch-size", type=int, help="engine calls per batch (default 5)")
    run.add_argument("--max-cost", type=float, help="budget in USD over all runs of this dir")
    run.add_argument(
        "--price",
        type=model_price,
        action="append",
        metavar="MODEL=INPUT,OUTPUT",
        help="USD per 1M input and output tokens of MODEL, for a model symai has no price "
        "for (or to override its); repeat per model",
    )
    run.add_argument("--error-handling", choices=("continue", "fail_fast"))
    run.add_argument("--as", dest="bind_as", help="pass each item as this keyword, not input=")
    run.add_argument(
        "--param",
        type=expression_param,
        action="append",
        metavar="KEY=VALUE",
        help="a keyword argument for the expression (built with it, and given with each "
        "item's call); VALUE is read as JSON if it is JSON (3, true, [1,2]), else as text; "
        "repeat per parameter",
    )
    run.add_argument(
        "--on-bad-line",
        choices=("stop", "skip"),
        help="stop: refuse input with bad records before any engine call (default); "
        "skip: run the rest, record each bad record as a failed item",
    )
    run.add_argument("--retries", type=int, help="tries per item on transient errors (3)")
    engine_options(
        run,
        "send the calls to this OpenAI-compatible server (vLLM, llama.cpp), e.g. "
        "http://127.0.0.1:8000, with symai's own engine for it; no symai config needed",
        kind_default=None,  # a run config may name it; vllm otherwise
    )
    run.add_argument("--rpm", type=float, help="at most this many requests a minute")
    run.add_argument("--tpm", type=float, help="at most this many tokens a minute")
    run.add_argument("--max-concurrency", type=int, help="at most this many calls at once")
    run.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help=PROGRESS_HELP,
    )
    run.add_argument(
        "--force", action="store_true", help="resume even if DATA or EXPRESSION changed"
    )

    status = commands.add_parser("status", help="what a run directory holds")
    status.add_argument("run_dirs", nargs="+", metavar="run_dir", help="one or more")
    status.add_argument("--json", action="store_true", help="the full snapshot as JSON")

    retry = commands.add_parser(
        "retry", help="run the failed items of a run again, and those an interruption cut short"
    )
    retry.add_argument("run_dir")
    retry.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto", help=PROGRESS_HELP
    )
    # for this retry only, over what the run had (command.json)
    retry.add_argument("--workers", type=positive, help="concurrent items (default: the run's)")
    retry.add_argument(
        "--max-cost",
        type=positive_number("USD"),
        help="budget in USD over all runs of the dir (default: the run's)",
    )
    engine_options(
        retry,
        "send the calls to this server instead (a server that moved, say)",
        kind=False,
        hosted=False,
    )

    export = commands.add_parser("export", help="write a run's results as JSON Lines or CSV")
    export.add_argument("run_dir")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--out", help="default: RUN_DIR/results.<format>; - for stdout")

    commands.add_parser("config-schema", help="print the run config's JSON schema")

    serve = commands.add_parser("serve", help="the REST API and workers over a queue folder")
    serve.add_argument("--dir", default="symbatcher-service", help="queue and job state")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=positive, default=2, help="jobs run at once")
    serve.add_argument("--lease", type=float, default=30.0, help="seconds a claim lasts")
    serve.add_argument(
        "--import", dest="imports", action="append", default=[], help="a module with @register"
    )
    serve.add_argument(
        "--data-dir", action="append", default=[], help="a folder jobs may read files from"
    )
    engine_options(
        serve,
        "jobs send their calls to this OpenAI-compatible server (vLLM, llama.cpp) as "
        "symai's 'neurosymbolic' engine; no symai config needed",
    )
    serve.add_argument(
        "--keep-days",
        type=positive_number("days"),
        help="remove a job (its items, results and run directory) this many days after it "
        "ended, e.g. 7 or 0.5 (default: keep every job until it is purged)",
    )


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
    "seconds a request to --engine-url (or --model's provider) may take before it fails "
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


# ---------------------------------------------------------------------- pieces
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
            raise CommandError(f"{module_name!r} ({where}) has no {attribute!r}")
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


def _show_progress(choice: str) -> bool | None:
    return {"on": True, "off": False}.get(choice)


def _hooks(run_dir: Path, command: dict[str, Any], progress: str, retry_failed: bool) -> list[Any]:
    from symbatcher.hooks import Budget, Checkpoint, Cost, Retry
    from symbatcher.pricing import FREE

    engine = command.get("engine") or {}
    hooks: list[Any] = [
        Checkpoint(run_dir, retry_failed=retry_failed, force=command.get("force", False)),
        Cost(command.get("prices"), default=FREE if engine.get("url") else None),
    ]
    if command.get("max_cost") is not None:
        hooks.append(Budget(command["max_cost"]))
    if command.get("retries", 0) > 1:
        hooks.append(Retry(command["retries"]))
    if any(engine.get(k) is not None for k in ("rpm", "tpm", "max_concurrency")):
        from symbatcher.hooks import RateLimit

        hooks.append(
            RateLimit(
                rpm=engine.get("rpm"),
                tpm=engine.get("tpm"),
                max_concurrency=engine.get("max_concurrency"),
            )
        )
    hooks.append(_progress(progress))
    return hooks


#: seconds between progress lines where stderr is no terminal (a container's log, cron)
PROGRESS_EVERY = 30.0


def _progress(choice: str) -> Any:
    """A bar on a terminal; elsewhere (``auto``) a line every :data:`PROGRESS_EVERY`
    seconds, so a run in a container's log is not silent for hours."""
    from symbatcher.hooks import Progress
    from symbatcher.hooks.progress import is_terminal

    if choice == "auto" and not is_terminal(sys.stderr):
        return Progress(show=False, callback=_progress_line, interval=PROGRESS_EVERY)
    return Progress(show=_show_progress(choice))


def _progress_line(event: Any) -> None:
    if event.status != "running":
        return  # the end: the summary says it
    total = f"/{event.total:,} items ({event.percent:.1f}%)" if event.total else " items"
    left = f", about {spoken(event.eta_seconds)} left" if event.eta_seconds else ""
    failed = f", {event.failed:,} failed" if event.failed else ""
    spent = f", ${event.cost:.4f} spent" if event.cost or event.max_cost is not None else ""
    print(
        f"symbatcher: {event.done:,}{total}, {event.items_per_second:.1f} items/s"
        f"{left}{failed}{spent}",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def run_engine(engine: dict[str, Any]) -> Iterator[None]:
    """The run's engine for the block, ready before anything is written: symai's engine for
    the server at ``url`` (asked first, registered under ``names`` until the block ends),
    or symai's own engines under ``names`` (each must exist)."""
    from symbatcher.binding import available_engine
    from symbatcher.local import serving

    names = engine.get("names") or ["neurosymbolic"]
    if engine.get("url"):
        kind = engine.get("kind") or "vllm"
        with serving(engine["url"], kind, names, timeout=engine.get("timeout")):
            yield
        return
    if engine.get("model"):
        from symbatcher.local import registered
        from symbatcher.providers import hosted_engine

        built = hosted_engine(
            engine["model"], key_env=engine.get("api_key_env"), timeout=engine.get("timeout")
        )
        with registered(built, names):
            yield
        return
    for name in names:
        available_engine(name)
    yield


def _execute(
    run_dir: Path,
    command: dict[str, Any],
    dataset: Any,
    total: int | None,
    progress: str,
    *,
    indexed: bool = False,
    hooks: list[Any] | None = None,
) -> Any:
    from symbatcher.scheduler import BatchScheduler

    params = command.get("params") or {}
    # import_dirs since 0.7.4, cwd since 0.7.3; before, the current directory
    import_dirs = command.get("import_dirs") or ([command["cwd"]] if "cwd" in command else None)
    target = load_expression(command["expression"], import_dirs, params)
    expr = bound_expression(target, command.get("as"), params)
    if hooks is None:
        hooks = _hooks(run_dir, command, progress, retry_failed=indexed)
    engine = command.get("engine") or {}
    scheduler = BatchScheduler(
        engine.get("names") or ["neurosymbolic"],
        hooks=hooks,
        error_handling=command["error_handling"],
        max_inflight_batches=engine.get("max_inflight_batches"),
        linger=engine.get("linger", DEFAULT_LINGER),
    )
    context: dict[str, Any] = {"replay_restored": False}
    if total is not None:
        context["total"] = total
    stream = scheduler._stream(
        expr, dataset, command["workers"], command["batch_size"], params, context, indexed=indexed
    )
    with stream:
        for _ in stream:
            pass  # outcomes are in the run's store
    return stream.stats


def _summary(
    run_dir: Path, live: bool = False, since: float | None = None
) -> tuple[list[str], int]:
    """The run's counts, then its failures by error type (largest first, a few examples
    each): what a user looks at first when a run did not all succeed. ``live``: a run
    is going on in the directory, so its started items are in flight, not cut short;
    ``since``: when it started, for its pace and what is left."""
    from symbatcher.store.sqlite import SQLiteStore
    from symbatcher.store.summary import summarize

    summary = summarize(SQLiteStore(run_dir), since)
    started = ""
    if summary.running:
        started = f"{summary.running} {'running' if live else 'interrupted'}, "
    lines = [
        f"{summary.items} items: {summary.succeeded} succeeded, {summary.failed} failed, "
        f"{started}{summary.pending - summary.running} pending; cost ${summary.cost:.4f}"
    ]
    if since is not None:
        elapsed, left = time.time() - since, summary.pending
        lines.append(_pace(summary.finished_since, elapsed, left, summary.cost_per_item))
    if len(summary.models) > 1:  # an expression that switches models: where the cost went
        lines.extend(
            f"  {model}: {used.calls:,} calls, {used.tokens:,} tokens, {usd(used.cost)}"
            for model, used in summary.models.items()
        )
    for group in summary.failures[:SHOW_ERROR_TYPES]:
        more = group.count - len(group.indices)
        named = ", ".join(map(str, group.indices)) + (f" and {more:,} more" if more else "")
        label = "item" if group.count == 1 else "items"
        message = group.message if len(group.message) <= 160 else group.message[:157] + "..."
        lines.append(f"  {group.count} failed with {group.error_type}: {message} ({label} {named})")
    if len(summary.failures) > SHOW_ERROR_TYPES:
        lines.append(f"  ... and {len(summary.failures) - SHOW_ERROR_TYPES} more error types")
    if summary.failed:
        lines.append(f"  (every error: symbatcher export {run_dir})")
    if summary.running and not live:
        lines.append(
            f"  (interrupted items run again when the same command runs again, or with "
            f"symbatcher retry {run_dir})"
        )
    return lines, summary.failed


def _projection(run_dir: Path, status: str, records: int | None) -> list[str]:
    """What the items not run yet would cost, at the rate of those run: after a trial
    (``--limit``; ``records`` in the data) or when the budget stopped the run (how large
    a budget would finish it)."""
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    totals = store.totals()
    if status == "budget_reached":
        total = store.read_meta().get("total")
        left = (total if isinstance(total, int) else totals.items) - totals.finished
        if left <= 0 or not totals.finished:
            return []
        need = usd(totals.cost + totals.cost_per_item * left)
        rate = _at_rate(totals, left)
        return [f"  {left:,} items pending: {rate}; all of it needs --max-cost of about {need}"]
    left = 0 if records is None else records - totals.finished
    if left <= 0:
        return []
    go_on = "the same command without --limit runs them, keeping these"
    if not totals.finished:
        return [f"  {left:,} records of the data not run yet: {go_on}"]
    return [f"  {left:,} records of the data not run yet: {_at_rate(totals, left)}; {go_on}"]


def _at_rate(totals: Any, left: int) -> str:
    cost, tokens = totals.cost_per_item, totals.tokens_per_item
    spend = f"about {usd(cost * left)} ({usd(cost)} an item) and " if cost else ""
    return (
        f"{spend}{tokens * left:,.0f} tokens ({tokens:,.0f} an item) at the rate of the "
        f"{totals.finished:,} items run"
    )


def _pace(done: int, elapsed: float, left: int, per_item: float = 0.0) -> str:
    """How fast the run going on finishes items, and how long (and, at ``per_item``
    dollars, how much) the rest would take so."""
    if not done or elapsed <= 0:
        return f"  this run: no item finished yet, {spoken(elapsed)} in"
    rate = done / elapsed
    more = f" and about {usd(per_item * left)} ({usd(per_item)} an item)" if per_item else ""
    return (
        f"  this run: {done} items finished in {spoken(elapsed)} ({rate:.1f} items/s); "
        f"the {left} left take about {spoken(left / rate)}{more} at that pace"
    )


# -------------------------------------------------------------------- commands
def _settings(args: argparse.Namespace) -> Any:
    """The config file's settings with the command line's on top, validated together."""
    from pydantic import ValidationError

    from symbatcher.config import ConfigError, RunConfig, load_config, problems

    base = load_config(args.config) if args.config else RunConfig.model_validate({})
    given = {
        "expression": args.expression,
        "items": args.data,
        "limit": args.limit,
        "run_dir": args.run_dir,
        "out": args.out,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "max_cost": args.max_cost,
        "error_handling": args.error_handling,
        "bind_as": args.bind_as,
        "on_bad_line": args.on_bad_line,
        "retries": args.retries,
    }
    merged = {**base.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    merged["prices"] = {**merged["prices"], **dict(args.price or [])}
    merged["params"] = {**merged["params"], **dict(args.param or [])}
    engine = {
        **engine_of(args),
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_concurrency": args.max_concurrency,
    }
    merged["engine"] = {**merged["engine"], **{k: v for k, v in engine.items() if v is not None}}
    try:
        settings = RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(problems(exc, option_of)) from None
    if not settings.expression or not settings.items:
        raise CommandError("give EXPRESSION and DATA, on the command line or in --config")
    return settings


def _import_dirs(args: argparse.Namespace) -> list[str]:
    """Where ``run`` imports the expression's module from: the current directory, then a
    run config's (whose ``items`` are relative to it too), so a config beside its
    pipelines runs from anywhere."""
    places = [str(Path.cwd())]
    if args.config:
        places.append(str(Path(args.config).resolve().parent))
    return list(dict.fromkeys(places))


def run_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # a typo, or a class it cannot build, fails before the data is read
    load_expression(settings.expression, _import_dirs(args), settings.params)
    with run_engine(settings.engine.model_dump()):  # no engine: no run directory is left
        return _run(args, settings)


def _run(args: argparse.Namespace, settings: Any) -> int:
    from symbatcher.store.sqlite import STATE_FILE

    run_dir = Path(settings.run_dir or "symbatcher-run")
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    spool: list[Path] = []  # stdin's copy until the run directory takes it
    try:
        return _run_in(args, settings, run_dir, spool)
    finally:
        for path in spool:
            path.unlink(missing_ok=True)
        if made and not (run_dir / STATE_FILE).exists():
            # refused, or failed, before it began (bad records, an expression that cannot
            # be built): this command made the directory and nothing in it is worth a retry
            shutil.rmtree(run_dir, ignore_errors=True)


def _run_in(args: argparse.Namespace, settings: Any, run_dir: Path, spool: list[Path]) -> int:
    """The run, which keeps what it was asked (``command.json``, stdin's copy) in the run
    directory only once the directory took it: a run refused there (another expression or
    dataset, a run in progress) must not overwrite what ``retry`` of the earlier run reads."""
    from symbatcher.config import items_at
    from symbatcher.data import check, format_of, read, spool_stdin
    from symbatcher.errors import RunMismatchError
    from symbatcher.store.sqlite import STATE_FILE

    data, name = Path(settings.items), None
    if settings.items == "-":
        data, name = spool_stdin(run_dir), "stdin"
        spool.append(data)
    kept_data = run_dir / STDIN_COPY if spool else data
    fmt = format_of(data, args.format)
    count: int | None = None
    dataset: Any = None
    limit = settings.limit
    if settings.items_path:
        if fmt != "json":
            raise CommandError("items_path needs a JSON file (.json)")
        try:
            document = json.loads(data.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot read {name or data}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CommandError(f"{name or data}: not valid JSON ({exc})") from None
        dataset = items_at(document, settings.items_path, name or str(data))
        count = records = len(dataset)
        if limit is not None and limit < count:
            # not a list: a list is fingerprinted whole, and the run goes on with all of it
            dataset, count = iter(dataset[:limit]), limit
    else:
        records, bad = check(data, fmt, name=name)
        count = records if limit is None else min(records, limit)
        later = [record for record in bad if record.index is not None and record.index >= count]
        bad = bad[: len(bad) - len(later)]  # check() lists them in order: the trial's first
        if later:
            print(
                f"symbatcher: note: {len(later)} bad record(s) after the first {count:,}, "
                f"which the whole run meets: {later[0].error()}",
                file=sys.stderr,
            )
        if bad and settings.on_bad_line == "stop":
            for record in bad[:SHOW_BAD]:
                print(f"symbatcher: {record.error()}", file=sys.stderr)
            more = f" ({len(bad) - SHOW_BAD} more not shown)" if len(bad) > SHOW_BAD else ""
            print(
                f"symbatcher: {len(bad)} bad record(s) in {name or data}{more}; nothing ran. "
                f"Fix them, or pass --on-bad-line skip to record them as failed items.",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    if not records:  # a typo'd export, or a day with nothing: say so, leave nothing
        where = f" at {settings.items_path}" if settings.items_path else ""
        print(f"symbatcher: {name or data} holds no records{where}; nothing ran", file=sys.stderr)
        return EXIT_OK
    command = {
        "expression": settings.expression,
        "cwd": str(Path.cwd()),
        "import_dirs": _import_dirs(args),  # where its module imports from, for a retry
        "data": str(kept_data.resolve()),
        "format": fmt,
        "as": settings.bind_as,
        "params": settings.params,
        "limit": limit,
        "records": records,  # in the data: what a trial (limit) leaves, for status
        "on_bad_line": settings.on_bad_line,
        "workers": settings.workers,
        "batch_size": settings.batch_size,
        "max_cost": settings.max_cost,
        "error_handling": settings.error_handling,
        "retries": settings.retries,
        "prices": settings.prices,
        "engine": settings.engine.model_dump(),
    }

    kept = False

    def keep() -> None:
        nonlocal kept
        if not kept:
            if spool:
                spool.pop().replace(kept_data)
            (run_dir / COMMAND_FILE).write_text(json.dumps(command, indent=2), encoding="utf-8")
            kept = True

    if not (run_dir / STATE_FILE).exists():
        keep()  # a new run: nothing to overwrite, and a crash leaves what retry needs
        data = kept_data
    if dataset is None:
        dataset = itertools.islice(read(data, fmt, on_bad="skip", name=name), count)
    asked = {**command, "force": args.force}
    hooks = _hooks(run_dir, asked, args.progress, retry_failed=False)
    checkpoint = hooks[0]
    stats = None
    try:
        stats = _execute(run_dir, asked, dataset, count, args.progress, hooks=hooks)
        status = stats.status
    except RunMismatchError as exc:
        raise RunMismatchError(f"{exc}{_what_changed(run_dir, command)}") from None
    except BaseException as exc:
        if checkpoint.began:
            keep()
        status = _failed_fast(exc, asked)
    keep()
    wrote = None
    if settings.out:
        out = Path(settings.out)
        rows = _export(run_dir, out, "csv" if settings.out.endswith(".csv") else "jsonl")
        wrote = f"{rows} items -> {'stdout' if settings.out == '-' else out}"
    return _finish(run_dir, status, stats, wrote, records if limit is not None else None)


def _what_changed(run_dir: Path, command: dict[str, Any]) -> str:
    """What the directory's run was started with, where this command differs from it: the
    mismatch error itself knows only fingerprints."""
    try:
        stored = _stored_command(run_dir)
    except (CommandError, OSError, ValueError):
        return ""
    changed = [
        f"{key} {json.dumps(stored.get(key))}, now {json.dumps(command.get(key))}"
        for key in ("expression", "params", "as")
        if stored.get(key, {} if key == "params" else None) != command.get(key)
    ]
    return f". It ran with {'; '.join(changed)}" if changed else ""


def serve_command(args: argparse.Namespace) -> int:
    try:
        from symbatcher.api.serve import serve
    except ImportError as exc:
        raise CommandError(
            f"the service needs the server extra: pip install 'symbatcher[server]' ({exc})"
        ) from None
    check_engine_options(args)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a server process: modules beside you import
    for module in args.imports:  # here, to name a bad one without a traceback
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CommandError(f"cannot import {module!r} (--import): {exc}") from exc
    default_price = None
    with ExitStack() as stack:
        stack.enter_context(_service_log())
        if args.engine_url or args.model:
            from symbatcher.pricing import FREE

            stack.enter_context(run_engine(engine_of(args)))
            if args.engine_url:
                default_price = FREE  # a self-hosted server: no per-token bill
        serve(
            args.dir,
            host=args.host,
            port=args.port,
            workers=args.workers,
            lease=args.lease,
            imports=args.imports,
            data_dirs=args.data_dir,
            default_price=default_price,
            keep=None if args.keep_days is None else args.keep_days * 86400,
            on_ready=lambda url: print(
                f"symbatcher serve: listening on {url}, {args.workers} worker(s), queue in "
                f"{args.dir}; Ctrl-C stops (after the running jobs; twice: now)",
                file=sys.stderr,
            ),
        )
    return EXIT_OK


@contextmanager
def _service_log() -> Iterator[None]:
    """A service says what it does, a line per event with its time (jobs started and
    ended, jobs removed after their term): symbatcher's INFO records on stderr while the
    command runs. The process's own logging set-up is left as it was."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    log = logging.getLogger("symbatcher")
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # said once, not again by a handler of the root logger
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def config_schema_command(args: argparse.Namespace) -> int:
    from symbatcher.config import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


def retry_command(args: argparse.Namespace) -> int:
    from symbatcher.data import DataFormatError
    from symbatcher.store.base import FAILED, RUNNING
    from symbatcher.store.codec import loads
    from symbatcher.store.pages import paged
    from symbatcher.store.sqlite import SQLiteStore

    run_dir = Path(args.run_dir)
    command = _retried_with(_stored_command(run_dir), args)
    store = SQLiteStore(run_dir)
    if not store.path.is_file():
        raise CommandError(f"no run state in {run_dir}: nothing to retry")
    totals = store.totals()
    if not totals.failed and not totals.running:
        print("symbatcher: no failed or interrupted items", file=sys.stderr)
        return EXIT_OK
    with run_engine(command.get("engine") or {}):
        total = store.read_meta().get("total")
        kind = DataFormatError.__qualname__
        bad = {r.index for r in store.items((FAILED,)) if r.error_type == kind}
        reread = _reread_bad_records(command, bad, total) if bad else {}
        failed = (
            (r.index, reread[r.index] if r.index in reread else loads(r.input))
            # and the items an interrupted run (or retry) left running: what a user means
            # by running the rest again
            for r in paged(store, (FAILED, RUNNING))
        )
        stats = None
        try:
            stats = _execute(run_dir, command, failed, total, args.progress, indexed=True)
            status = stats.status
        except BaseException as exc:
            status = _failed_fast(exc, command)
        return _finish(run_dir, status, stats)


def _retried_with(command: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The run's command with what this retry's options change (not kept: the next retry
    starts from the run's again)."""
    changed = {"workers": args.workers, "max_cost": args.max_cost}
    command = {**command, **{k: v for k, v in changed.items() if v is not None}}
    engine = {**(command.get("engine") or {})}
    for key, value in (("url", args.engine_url), ("timeout", args.engine_timeout)):
        if value is not None:
            engine[key] = value
    if args.engine_url is not None:
        engine.pop("model", None)  # the server named now answers instead
        engine.pop("api_key_env", None)
    if engine.get("timeout") is not None and not engine.get("url") and not engine.get("model"):
        raise CommandError(
            "--engine-timeout is for a server at --engine-url or a --model's provider, and "
            "this run had neither; symai's configured engines take theirs from symai's config"
        )
    return {**command, "engine": engine}


def _reread_bad_records(command: dict[str, Any], indices: set[int], total: Any) -> dict[int, Any]:
    """The records at ``indices`` read again from the run's data, as they are now.

    A bad record's stored input is only a description of the problem; what a user means
    by retrying it is reading the line they fixed (one still bad fails again, with no
    engine call). Records are found by position, so the data must have as many as before.
    """
    from symbatcher.data import read

    data = Path(command["data"])
    if not data.is_file():
        raise CommandError(
            f"{len(indices)} failed item(s) are bad records of {data}, which is gone; put "
            f"it back (fixed) to retry them. Nothing ran."
        )
    found: dict[int, Any] = {}
    count = 0
    for count, record in enumerate(read(data, command.get("format"), on_bad="skip"), 1):
        if count - 1 in indices:
            found[count - 1] = record
    limit = command.get("limit")
    if isinstance(total, int) and (count if limit is None else min(count, limit)) != total:
        raise CommandError(
            f"{data} now has {count} records where the run read {total}; retry finds its "
            f"bad records by position, so fix lines in place without adding or removing "
            f"any. Nothing ran."
        )
    return found


def status_command(args: argparse.Namespace) -> int:
    """Each directory's status (``symbatcher status runs/*``); one without a run is named
    on stderr and the rest still shown."""
    from symbatcher.store.snapshot import write_snapshot
    from symbatcher.store.sqlite import SQLiteStore

    run_dirs = [Path(d) for d in args.run_dirs]
    if args.json:  # written as it is read: a run of millions fits
        if len(run_dirs) > 1:
            raise CommandError("--json takes one run directory (the snapshot of one run)")
        if not (run_dirs[0] / "state.sqlite").is_file():
            raise CommandError(f"no run state in {run_dirs[0]}")
        write_snapshot(SQLiteStore(run_dirs[0]), sys.stdout)
        return EXIT_OK
    missing = [d for d in run_dirs if not (d / "state.sqlite").is_file()]
    for number, run_dir in enumerate(d for d in run_dirs if d not in missing):
        if number:
            print()
        _status(run_dir)
    for run_dir in missing:
        print(f"symbatcher: no run state in {run_dir}", file=sys.stderr)
    return EXIT_USAGE if missing else EXIT_OK


def _status(run_dir: Path) -> None:
    from symbatcher.store.lock import RunLock

    lock = RunLock(run_dir)
    holder = lock.holder()
    since = lock.running_since() if holder is not None else None
    lines, _ = _summary(run_dir, live=holder is not None, since=since)
    try:
        command = _stored_command(run_dir)
    except (CommandError, OSError, ValueError):
        command = {}  # a run of the Python API: no command, no trial
    if command.get("limit") is not None and isinstance(command.get("records"), int):
        lines.extend(_projection(run_dir, "", command["records"]))
    if holder is not None:
        print(f"{run_dir}: running now, by {holder}")
    print(f"{run_dir}: " + "\n".join(lines))


def export_command(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / f"results.{args.format}"
    rows = _export(run_dir, out, args.format)
    print(f"{rows} items -> {'stdout' if args.out == '-' else out}", file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------- plumbing
def _export(run_dir: Path, out: Path, fmt: str) -> int:
    """The run's results to ``out``, or to standard output for ``-`` (for a pipe)."""
    from symbatcher.store.export import export_results, write_results
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    if not store.path.is_file():
        raise CommandError(f"no run state in {run_dir}")
    if str(out) == "-":
        count = write_results(store, sys.stdout, fmt)  # type: ignore[arg-type]
        sys.stdout.flush()
        return count
    return export_results(store, out, fmt)  # type: ignore[arg-type]


def _stored_command(run_dir: Path) -> dict[str, Any]:
    path = run_dir / COMMAND_FILE
    try:
        command: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(
            f"{run_dir} was not made by `symbatcher run` (no {COMMAND_FILE})"
        ) from None
    return command


def _failed_fast(exc: BaseException, command: dict[str, Any]) -> str:
    """With ``fail_fast`` the run raises its first item's error: say it in a line, as the
    end of a run, instead of a traceback through symai; anything else goes on up."""
    if command.get("error_handling") != "fail_fast" or not isinstance(exc, Exception):
        raise exc
    if isinstance(exc, SymbatcherError):  # symbatcher's own: a set-up error, said as one
        raise exc
    notes = "; ".join(note.removeprefix("symbatcher: ") for note in getattr(exc, "__notes__", []))
    print(
        f"symbatcher: fail_fast: {type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""),
        file=sys.stderr,
    )
    return "failed"


def _finish(
    run_dir: Path,
    status: str,
    stats: Any = None,
    wrote: str | None = None,
    records: int | None = None,
) -> int:
    """The directory's counts (every run of it so far), then what this run did and how
    fast: the figures a user tunes ``--workers`` and ``--batch-size`` by; after a trial
    (``--limit``), what the rest of the data's ``records`` would cost at its rate."""
    lines, failed = _summary(run_dir)
    if stats is not None:
        lines.append(f"  this run: {stats.summary(spend=False).split(': ', 1)[1]}")
        if stats.stop_reason:  # the run halted: its items not done stay pending
            lines.append(f"  stopped: {stats.stop_reason}; run the same command to go on")
    if wrote is not None:
        lines.append(f"  {wrote}")
    lines.extend(_projection(run_dir, status, records))
    print(f"{status}: " + "\n".join(lines), file=sys.stderr)
    if status == "budget_reached":
        return EXIT_BUDGET
    return EXIT_FAILED if failed or status == "failed" else EXIT_OK
