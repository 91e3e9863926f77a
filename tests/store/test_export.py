"""A run's results as a CSV table: the columns a spreadsheet user had, and a few more."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from symbatcher.store import ItemRecord, MemoryStore
from symbatcher.store.export import MAX_SPREAD, export_results


def store_of(rows: list[tuple[str, Any, Any]]) -> MemoryStore:
    """(status, input, output or error message) per item, in order."""
    store = MemoryStore()
    store.open()
    for index, (status, value, outcome) in enumerate(rows):
        record = ItemRecord(index=index, fingerprint=f"fp{index}", input=json.dumps(value))
        store.item_started(record)
        record.status = status
        if status == "succeeded":
            record.result = json.dumps(outcome)
        else:
            record.error_type, record.error_message = "ValueError", outcome
        store.item_finished(record).result()
    return store


def table(store: MemoryStore, path: Path) -> list[dict[str, str]]:
    assert export_results(store, path, "csv") == len(list(store.items(())))
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_dict_inputs_and_outputs_get_a_column_per_key(tmp_path: Path) -> None:
    store = store_of(
        [
            ("succeeded", {"id": "1", "text": "great, really"}, {"verdict": "good", "score": 0.9}),
            ("failed", {"id": "2", "text": "boom"}, "no, boom"),
            ("succeeded", {"id": "3", "text": "late", "extra": "x"}, {"verdict": "ok"}),
        ]
    )
    rows = table(store, tmp_path / "out.csv")
    assert list(rows[0]) == [
        "index", "status", "input.id", "input.text", "input.extra",
        "output.verdict", "output.score",
        "error_type", "error_message", "tokens", "prompt_tokens", "completion_tokens", "cost",
    ]  # fmt: skip
    assert rows[0]["input.text"] == "great, really" and rows[0]["output.score"] == "0.9"
    assert rows[1]["output.verdict"] == "" and rows[1]["status"] == "failed"
    assert (rows[1]["error_type"], rows[1]["error_message"]) == ("ValueError", "no, boom")
    assert rows[2]["input.extra"] == "x" and rows[0]["input.extra"] == ""  # a key seen later
    assert rows[2]["output.score"] == "" and rows[0]["error_type"] == ""


def test_other_values_stay_in_one_column_text_as_text(tmp_path: Path) -> None:
    store = store_of(
        [
            ("succeeded", "plain, text", ["a", 1]),
            ("succeeded", {"k": [1, 2]}, "a summary"),
            ("succeeded", 7, {"nested": {"deep": True}}),
        ]
    )
    rows = table(store, tmp_path / "out.csv")
    assert list(rows[0])[2:6] == ["input", "input.k", "output", "output.nested"]
    assert [r["input"] for r in rows] == ["plain, text", "", "7"]
    assert [r["input.k"] for r in rows] == ["", "[1, 2]", ""]
    assert [r["output"] for r in rows] == ['["a", 1]', "a summary", ""]
    assert rows[2]["output.nested"] == '{"deep": true}'


def test_too_many_keys_stay_one_json_cell(tmp_path: Path) -> None:
    wide = [("succeeded", {f"k{i}": i}, None) for i in range(MAX_SPREAD + 1)]
    rows = table(store_of(wide), tmp_path / "out.csv")
    assert list(rows[0])[:4] == ["index", "status", "input", "output"]
    assert rows[-1]["input"] == json.dumps({f"k{MAX_SPREAD}": MAX_SPREAD})
