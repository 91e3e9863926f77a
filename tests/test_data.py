"""Reading DATA files: formats, streaming, and bad records named by line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from symbatcher.data import BadRecord, DataFormatError, check, format_of, read, spool_stdin


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_json_and_csv(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "a.jsonl", '{"q": 1}\n\n"two"\n[3]\n')
    assert list(read(jsonl)) == [{"q": 1}, "two", [3]]
    array = write(tmp_path / "a.json", json.dumps([{"q": 1}, 2]))
    assert list(read(array)) == [{"q": 1}, 2]
    table = write(tmp_path / "a.csv", 'text,label\n"hello, you",x\nbye,y\n')
    rows = [{"text": "hello, you", "label": "x"}, {"text": "bye", "label": "y"}]
    assert list(read(table)) == rows


def test_jsonl_streams_without_reading_ahead(tmp_path: Path) -> None:
    path = write(tmp_path / "big.jsonl", "".join(f'{{"i": {i}}}\n' for i in range(1000)))
    records = read(path)
    assert next(records) == {"i": 0}
    assert next(records) == {"i": 1}
    records.close()  # type: ignore[attr-defined]


def test_a_bad_line_stops_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"ok": 1}\n{"ok": 2}\n{broken\n{"ok": 4}\n')
    with pytest.raises(DataFormatError, match=r"a\.jsonl, line 3: not valid JSON") as info:
        list(read(path))
    assert info.value.line == 3


def test_a_bad_line_can_be_skipped_in_its_place(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"ok": 1}\n{broken\n{"ok": 3}\n')
    records = list(read(path, on_bad="skip"))
    assert records[0] == {"ok": 1} and records[2] == {"ok": 3}
    bad = records[1]
    assert isinstance(bad, BadRecord) and bad.line == 2
    assert "line 2" in str(bad.error())


def test_check_finds_every_bad_record_in_one_pass(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a,b\n1,2\n3\n4,5\n6,7,8\n")
    count, bad = check(path)
    assert count == 4
    assert [(b.line, b.problem) for b in bad] == [
        (3, "1 fields where the header has 2"),
        (5, "3 fields where the header has 2"),
    ]


def test_whole_file_errors_name_the_fault(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="expected a JSON array"):
        list(read(write(tmp_path / "a.json", '{"not": "a list"}')))
    with pytest.raises(DataFormatError, match=r"line 2: not valid JSON"):
        list(read(write(tmp_path / "b.json", "[1,\n}")))
    with pytest.raises(DataFormatError, match="distinct column names"):
        list(read(write(tmp_path / "c.csv", "a,a\n1,2\n")))
    with pytest.raises(DataFormatError, match="cannot read"):
        list(read(tmp_path / "missing.jsonl"))
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        format_of(tmp_path / "data.txt")
    with pytest.raises(DataFormatError, match="unknown data format"):
        format_of("x", "yaml")  # type: ignore[arg-type]
    assert format_of(tmp_path / "data.txt", "csv") == "csv"


def test_stdin_is_jsonl_and_can_be_spooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO(b'{"a": 1}\n{"a": 2}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
    path = spool_stdin(tmp_path)
    assert check(path) == (2, [])
    assert list(read(path)) == [{"a": 1}, {"a": 2}]
