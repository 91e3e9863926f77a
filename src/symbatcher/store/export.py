"""Writing a run's results out of its store, in dataset order, streamed a page at a time
(an export of a run going on holds no read open, which would keep its log from being
reset)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from symbatcher.store.base import SUCCEEDED, ItemRecord, RunStore
from symbatcher.store.codec import loads
from symbatcher.store.pages import paged

ExportFormat = Literal["jsonl", "csv"]


def result_row(record: ItemRecord) -> dict[str, Any]:
    error = None
    if record.status != SUCCEEDED and record.error_type is not None:
        error = {"type": record.error_type, "message": record.error_message}
    return {
        "index": record.index,
        "status": record.status,
        "input": loads(record.input),
        "output": loads(record.result) if record.status == SUCCEEDED else None,
        "error": error,
        "tokens": record.prompt_tokens + record.completion_tokens,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost": record.cost,
    }


def export_results(store: RunStore, path: str | Path, fmt: ExportFormat = "jsonl") -> int:
    """Write every recorded item to ``path`` (atomically); returns the rows written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        count = write_results(store, out, fmt)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    return count


def write_results(store: RunStore, out: TextIO, fmt: ExportFormat = "jsonl") -> int:
    """Every recorded item to an open stream (standard output, say); the rows written."""
    count = 0
    if fmt == "jsonl":
        for record in paged(store, ()):
            out.write(json.dumps(result_row(record), ensure_ascii=False) + "\n")
            count += 1
    elif fmt == "csv":
        lines = csv_lines(store)
        out.write(next(lines))  # the header
        for line in lines:
            out.write(line)
            count += 1
    else:
        raise ValueError(f"export format must be 'jsonl' or 'csv', got {fmt!r}")
    return count


def csv_lines(
    store: RunStore, offset: int = 0, limit: int | None = None, table: CsvTable | None = None
) -> Iterator[str]:
    """A CSV of the items from index ``offset`` on, at most ``limit`` of them: the header,
    then a line per item. The columns are the whole run's (``table``, else found by a pass
    over the run), so every page of a run has the same ones."""
    table = CsvTable.of(store) if table is None else table
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield line(table.header())
    for record in itertools.islice(paged(store, (), offset), limit):
        yield line(table.row(result_row(record)))


#: more keys than this across a run's dict inputs (or outputs) stay one JSON cell each
MAX_SPREAD = 50


@dataclass
class CsvTable:
    """A CSV's columns for a run: a dict input or output spread over a column per key
    (``input.text``, ``output.score``), as the spreadsheet it came from had them; other
    values in one ``input`` / ``output`` column; the error as its type and message."""

    input_keys: list[str]
    output_keys: list[str]
    plain_input: bool
    plain_output: bool

    @classmethod
    def of(cls, store: RunStore) -> CsvTable:
        """One pass over the run for the keys (a table's header comes first)."""
        keys: tuple[dict[str, None], dict[str, None]] = ({}, {})
        plain = [False, False]
        for record in paged(store, ()):
            values = [loads(record.input)]
            if record.status == SUCCEEDED:
                values.append(loads(record.result))
            for side, value in enumerate(values):
                if isinstance(value, dict) and len(keys[side]) <= MAX_SPREAD:
                    keys[side].update(dict.fromkeys(map(str, value)))
                else:
                    plain[side] = True
        spread = [list(k) if len(k) <= MAX_SPREAD else [] for k in keys]
        return cls(spread[0], spread[1], plain[0] or not spread[0], plain[1] or not spread[1])

    def header(self) -> list[str]:
        return [
            "index",
            "status",
            *(["input"] if self.plain_input else []),
            *(f"input.{key}" for key in self.input_keys),
            *(["output"] if self.plain_output else []),
            *(f"output.{key}" for key in self.output_keys),
            "error_type",
            "error_message",
            *TOTALS,
        ]

    def row(self, row: dict[str, Any]) -> list[Any]:
        error = row["error"] or {}
        return [
            row["index"],
            row["status"],
            *_cells(row["input"], self.input_keys, self.plain_input),
            *_cells(row["output"], self.output_keys, self.plain_output),
            error.get("type") or "",
            error.get("message") or "",
            *(row[name] for name in TOTALS),
        ]


TOTALS = ("tokens", "prompt_tokens", "completion_tokens", "cost")


def _cells(value: Any, keys: list[str], plain: bool) -> list[str]:
    """``value`` in the plain column and/or one column per key (whichever it fits)."""
    spread = isinstance(value, dict) and bool(keys)
    cells = ["" if value is None or spread else _text(value)] if plain else []
    by_key = {str(k): v for k, v in value.items()} if spread else {}
    return cells + ["" if by_key.get(key) is None else _text(by_key[key]) for key in keys]


def _text(value: Any) -> str:
    """A cell: text as it is (a spreadsheet shows ``great``, not ``"great"``), anything
    else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
