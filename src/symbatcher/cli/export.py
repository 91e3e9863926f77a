"""``symbatcher export``: a run's results as JSON Lines or CSV, to a file or a pipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from symbatcher.cli.exits import EXIT_OK
from symbatcher.cli.run_dir import DEFAULT_RUN_DIR, RUN_DIR_HELP
from symbatcher.errors import CommandError


def add_parser(commands: Any) -> None:
    """``symbatcher export``."""
    export = commands.add_parser("export", help="write a run's results as JSON Lines or CSV")
    export.add_argument("run_dir", nargs="?", default=DEFAULT_RUN_DIR, help=RUN_DIR_HELP)
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--out", help="default: RUN_DIR/results.<format>; - for stdout")


def export_command(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / f"results.{args.format}"
    rows = export_to(run_dir, out, args.format)
    print(f"{rows} items -> {'stdout' if args.out == '-' else out}", file=sys.stderr)
    return EXIT_OK


def export_to(run_dir: Path, out: Path, fmt: str) -> int:
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
