"""``symbatcher retry``: a run's failed items again, and those an interruption cut short."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from symbatcher.cli.engine import run_engine
from symbatcher.cli.execute import execute
from symbatcher.cli.exits import EXIT_OK
from symbatcher.cli.options import PROGRESS_HELP, engine_options, positive, positive_number
from symbatcher.cli.report import failed_fast, finish
from symbatcher.cli.run_dir import DEFAULT_RUN_DIR, RUN_DIR_HELP, stored_command
from symbatcher.errors import CommandError


def add_parser(commands: Any) -> None:
    """``symbatcher retry``."""
    retry = commands.add_parser(
        "retry", help="run the failed items of a run again, and those an interruption cut short"
    )
    retry.add_argument("run_dir", nargs="?", default=DEFAULT_RUN_DIR, help=RUN_DIR_HELP)
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


def retry_command(args: argparse.Namespace) -> int:
    from symbatcher.data import DataFormatError
    from symbatcher.store.base import FAILED, RUNNING
    from symbatcher.store.codec import loads
    from symbatcher.store.pages import paged
    from symbatcher.store.sqlite import SQLiteStore

    run_dir = Path(args.run_dir)
    command = _retried_with(stored_command(run_dir), args)
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
            stats = execute(run_dir, command, failed, total, args.progress, indexed=True)
            status = stats.status
        except BaseException as exc:
            status = failed_fast(exc, command)
        return finish(run_dir, status, stats)


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
