"""``symbatcher models``: the models ``--model`` takes, their prices and keys; with a run
directory (a trial, say), what the run's whole data would cost on each."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from symbatcher.cli.exits import EXIT_OK
from symbatcher.cli.run_dir import stored_command
from symbatcher.dollars import usd
from symbatcher.errors import CommandError


def add_parser(commands: Any) -> None:
    """``symbatcher models``."""
    models = commands.add_parser(
        "models",
        help="the hosted models --model takes, their prices, and what a run would cost on each",
    )
    models.add_argument("pattern", nargs="?", help="only models whose name holds this")
    models.add_argument(
        "--run-dir",
        help="a run (a trial with --limit, say): what its whole data would cost on each model "
        "at its tokens per item, cheapest first",
    )
    models.add_argument("--json", action="store_true", help="a JSON object per model")


def models_command(args: argparse.Namespace) -> int:
    from symbatcher.providers import catalog

    entries = catalog(args.pattern)
    if not entries:
        raise CommandError(f"symai knows no model whose name holds {args.pattern!r}")
    rows = [dataclasses.asdict(entry) for entry in entries]
    basis = None
    if args.run_dir:
        basis = _per_item(Path(args.run_dir))
        for row in rows:
            row["whole_data"] = _whole(row, basis)
        rows.sort(key=lambda row: (row["whole_data"] is None, row["whole_data"] or 0.0))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    for line in _table(rows, basis):
        print(line)
    return EXIT_OK


def _per_item(run_dir: Path) -> dict[str, Any]:
    """A run's tokens per finished item and how many records its data holds."""
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    if not store.path.is_file():
        raise CommandError(f"no run state in {run_dir}")
    totals = store.totals()
    if not totals.finished or not totals.prompt_tokens + totals.completion_tokens:
        raise CommandError(
            f"{run_dir} has no finished item with token counts yet: run a few first "
            f"(symbatcher run ... --limit 20)"
        )
    try:
        records = stored_command(run_dir).get("records")
    except CommandError:
        records = None  # a run of the Python API: its items are what it knows
    if not isinstance(records, int):
        total = store.read_meta().get("total")
        records = total if isinstance(total, int) else totals.items
    return {
        "records": records,
        "finished": totals.finished,
        "prompt": totals.prompt_tokens / totals.finished,
        "completion": totals.completion_tokens / totals.finished,
        "models": list(store.usage_by_model()),
    }


def _whole(row: dict[str, Any], basis: dict[str, Any]) -> float | None:
    if row["input_per_1m"] is None or row["output_per_1m"] is None:
        return None
    per_item = basis["prompt"] * row["input_per_1m"] + basis["completion"] * row["output_per_1m"]
    return float(per_item * basis["records"] / 1e6)


def _table(rows: list[dict[str, Any]], basis: dict[str, Any] | None) -> list[str]:
    def price(value: float | None) -> str:
        return "-" if value is None else f"${value:g}"

    header = ["model", "input/1M", "output/1M", "key"]
    if basis is not None:
        header.append(f"{basis['records']:,} records")
    cells = [header]
    for row in rows:
        key = row["key_variable"] + (" (set)" if row["key_set"] else "")
        line = [row["model"], price(row["input_per_1m"]), price(row["output_per_1m"]), key]
        if basis is not None:
            line.append("-" if row["whole_data"] is None else usd(row["whole_data"]))
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    if basis is not None:
        ran = ", ".join(basis["models"]) or "its engine"
        lines.append(
            f"at the run's {basis['prompt']:,.0f} prompt and {basis['completion']:,.0f} "
            f"completion tokens an item ({basis['finished']:,} items on {ran}); another "
            f"model's tokenizer and answers differ, so take it as a guide"
        )
    return lines
