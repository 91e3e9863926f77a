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


BOM = b"\xef\xbb\xbf"  # what Excel's "CSV UTF-8" and Windows Notepad put first


def test_a_byte_order_mark_is_not_part_of_the_first_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "excel.csv"
    table.write_bytes(BOM + b"text,stars\r\ngreat,5\r\nawful,1\r\n")
    assert list(read(table)) == [{"text": "great", "stars": "5"}, {"text": "awful", "stars": "1"}]
    lines = tmp_path / "notepad.jsonl"
    lines.write_bytes(BOM + b'"a"\r\n"b"\r\n')
    assert check(lines) == (2, []) and list(read(lines)) == ["a", "b"]
    array = tmp_path / "a.json"
    array.write_bytes(BOM + b'["a", "b"]')
    assert list(read(array)) == ["a", "b"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BOM + b'"x"\n')))
    assert list(read("-")) == ["x"]


def test_text_that_is_not_utf8_is_named_by_its_record_and_the_rest_is_read(
    tmp_path: Path,
) -> None:
    lines = tmp_path / "latin1.jsonl"
    lines.write_bytes('"ok"\n"café au lait"\n"fine"\n'.encode("latin-1"))
    count, bad = check(lines)
    assert count == 3 and [(b.line, b.problem) for b in bad] == [
        (2, "not UTF-8 text (byte 0xe9 at column 5); save the file as UTF-8")
    ]
    skipped = list(read(lines, on_bad="skip"))
    assert skipped[0] == "ok" and skipped[2] == "fine" and isinstance(skipped[1], BadRecord)
    with pytest.raises(DataFormatError, match=r"latin1\.jsonl, line 2: not UTF-8 text"):
        list(read(lines))

    table = tmp_path / "latin1.csv"
    table.write_bytes("id,text\n1,plain\n2,café\n".encode("latin-1"))
    count, bad = check(table)
    assert count == 2 and [(b.line, b.problem) for b in bad] == [
        (3, "not UTF-8 text (byte 0xe9 in column 'text'); save the file as UTF-8")
    ]
    header = tmp_path / "header.csv"
    header.write_bytes("id,tèxt\n1,x\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"header\.csv, line 1: not UTF-8 text \(byte 0xe8"):
        check(header)

    array = tmp_path / "latin1.json"
    array.write_bytes('[\n  "a",\n  "é"\n]'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.json, line 3: not UTF-8 text") as info:
        list(read(array))
    assert info.value.line == 3 and "at column 4" in str(info.value)


def test_a_csv_field_may_hold_a_long_document_and_the_process_s_limit_stays(
    tmp_path: Path,
) -> None:
    import csv

    document = "word " * 100_000  # 500,000 characters: over the csv module's 131,072
    table = tmp_path / "papers.csv"
    with table.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["id", "text"], ["1", document], ["2", "short"]])
    before = csv.field_size_limit()
    assert check(table) == (2, [])
    assert [row["text"] for row in read(table)] == [document, "short"]
    assert csv.field_size_limit() == before  # the module's limit is the process's: put back


def test_csv_bad_rows_are_named_by_their_line_across_reads(tmp_path: Path) -> None:
    rows = ["id,text"] + [f"{i},row {i}" for i in range(1, 1000)]
    rows[399] = "399,too,many"  # line 400: past the first reads of a few hundred rows
    rows[700] = '700,"multi\nline"'  # a quoted newline: the rows after it end a line later
    rows[900] = "900,x,y"  # line 902
    table = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    count, bad = check(table)
    assert count == 999 and [b.line for b in bad] == [400, 902]
    records = list(read(table, on_bad="skip"))
    assert records[699] == {"id": "700", "text": "multi\nline"}
    assert isinstance(records[398], BadRecord) and records[998] == {"id": "999", "text": "row 999"}
