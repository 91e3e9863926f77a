"""``symbatcher status``: what run directories hold."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from symbatcher.cli.exits import EXIT_OK, EXIT_USAGE
from symbatcher.cli.report import projection, summary_lines
from symbatcher.cli.run_dir import DEFAULT_RUN_DIR, RUN_DIRS_HELP, stored_command
from symbatcher.errors import CommandError


def add_parser(commands: Any) -> None:
    """``symbatcher status``."""
    status = commands.add_parser("status", help="what a run directory holds")
    status.add_argument(
        "run_dirs",
        nargs="*",
        default=[DEFAULT_RUN_DIR],
        metavar="run_dir",
        help=RUN_DIRS_HELP,
    )
    status.add_argument("--json", action="store_true", help="the full snapshot as JSON")


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
    lines, _ = summary_lines(run_dir, live=holder is not None, since=since)
    try:
        command = stored_command(run_dir)
    except (CommandError, OSError, ValueError):
        command = {}  # a run of the Python API: no command, no trial
    if command.get("limit") is not None and isinstance(command.get("records"), int):
        lines.extend(projection(run_dir, "", command["records"]))
    if holder is not None:
        print(f"{run_dir}: running now, by {holder}")
    print(f"{run_dir}: " + "\n".join(lines))
