"""``symbatcher run``: an Expression over a data file, resumable. Running the same command
again resumes: finished items are skipped, pending and interrupted ones run."""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from symbatcher.cli.engine import run_engine
from symbatcher.cli.execute import execute, hooks_for
from symbatcher.cli.exits import EXIT_BAD_INPUT, EXIT_OK
from symbatcher.cli.export import export_to
from symbatcher.cli.options import (
    PROGRESS_HELP,
    engine_of,
    engine_options,
    expression_param,
    model_price,
    option_of,
)
from symbatcher.cli.report import failed_fast, finish
from symbatcher.cli.run_dir import DEFAULT_RUN_DIR, STDIN_COPY, keep_command, stored_command
from symbatcher.errors import CommandError
from symbatcher.expression_loader import load_expression

SHOW_BAD = 20


def add_parser(commands: Any) -> None:
    """``symbatcher run``."""
    run = commands.add_parser("run", help="run an Expression over a data file (resumable)")
    run.add_argument("expression", nargs="?", help="MODULE:NAME, e.g. mypkg.pipelines:Summarize")
    run.add_argument("data", nargs="?", help="a .jsonl, .json (array) or .csv file, or -")
    run.add_argument("--config", help="a run config file (YAML or JSON); options here win")
    run.add_argument("--run-dir", help=f"state (default ./{DEFAULT_RUN_DIR})")
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

    run_dir = Path(settings.run_dir or DEFAULT_RUN_DIR)
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
            keep_command(run_dir, command)
            kept = True

    if not (run_dir / STATE_FILE).exists():
        keep()  # a new run: nothing to overwrite, and a crash leaves what retry needs
        data = kept_data
    if dataset is None:
        dataset = itertools.islice(read(data, fmt, on_bad="skip", name=name), count)
    asked = {**command, "force": args.force}
    hooks = hooks_for(run_dir, asked, args.progress, retry_failed=False)
    checkpoint = hooks[0]
    stats = None
    try:
        stats = execute(run_dir, asked, dataset, count, args.progress, hooks=hooks)
        status = stats.status
    except RunMismatchError as exc:
        raise RunMismatchError(f"{exc}{_what_changed(run_dir, command)}") from None
    except BaseException as exc:
        if checkpoint.began:
            keep()
        status = failed_fast(exc, asked)
    keep()
    wrote = None
    if settings.out:
        out = Path(settings.out)
        rows = export_to(run_dir, out, "csv" if settings.out.endswith(".csv") else "jsonl")
        wrote = f"{rows} items -> {'stdout' if settings.out == '-' else out}"
    return finish(run_dir, status, stats, wrote, records if limit is not None else None)


def _what_changed(run_dir: Path, command: dict[str, Any]) -> str:
    """What the directory's run was started with, where this command differs from it: the
    mismatch error itself knows only fingerprints."""
    try:
        stored = stored_command(run_dir)
    except (CommandError, OSError, ValueError):
        return ""
    changed = [
        f"{key} {json.dumps(stored.get(key))}, now {json.dumps(command.get(key))}"
        for key in ("expression", "params", "as")
        if stored.get(key, {} if key == "params" else None) != command.get(key)
    ]
    return f". It ran with {'; '.join(changed)}" if changed else ""
