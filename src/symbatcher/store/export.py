"""Writing a run's results out of its store, in dataset order, streamed a page at a time
(an export of a run going on holds no read open, which would keep its log from being
reset)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Literal

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
    count = 0
    with partial.open("w", encoding="utf-8", newline="") as out:
        if fmt == "jsonl":
            for record in paged(store, ()):
                out.write(json.dumps(result_row(record), ensure_ascii=False) + "\n")
                count += 1
        elif fmt == "csv":
            writer: Any = None
            for record in paged(store, ()):
                row = result_row(record)
                flat = {
                    **row,
                    "input": _text(row["input"]),
                    "output": "" if row["output"] is None else _text(row["output"]),
                    "error": "" if row["error"] is None else json.dumps(row["error"]),
                }
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(flat))
                    writer.writeheader()
                writer.writerow(flat)
                count += 1
        else:
            raise ValueError(f"export format must be 'jsonl' or 'csv', got {fmt!r}")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    return count


def _text(value: Any) -> str:
    """A cell: text as it is (a spreadsheet shows ``great``, not ``"great"``), anything
    else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
