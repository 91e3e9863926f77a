"""Reading a dataset from a file or stdin: JSON Lines, a JSON array, or CSV.

JSON Lines and CSV stream, so a file larger than memory is fine. A malformed record is
named by its line number; what happens to it is the caller's choice (``on_bad``):
``"stop"`` raises :class:`DataFormatError` -- and :func:`check` finds every bad record in
one pass before anything runs, so a run can refuse bad input before its first engine
call -- or ``"skip"`` yields a :class:`BadRecord` in its place, which the run records as
that item's failure (so the numbering of the others does not shift and nothing is lost).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

from symbatcher.errors import SymbatcherError

Format = Literal["jsonl", "json", "csv"]
OnBad = Literal["stop", "skip"]
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
}


class DataFormatError(SymbatcherError, ValueError):
    """The input could not be read; the message names the source, the line and the fault."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be read, in its place in the dataset."""

    source: str
    line: int
    problem: str
    index: int | None = None  # its place among the records, where :func:`check` found it

    def error(self) -> DataFormatError:
        return DataFormatError(f"{self.source}, line {self.line}: {self.problem}", self.line)


def format_of(source: str | Path, format: Format | None = None) -> Format:
    """The format asked for, else the one the file name says; stdin is JSON Lines."""
    if format is not None:
        if format not in ("jsonl", "json", "csv"):
            raise DataFormatError(f"unknown data format {format!r}: use jsonl, json or csv")
        return format
    if str(source) == "-":
        return "jsonl"
    suffix = Path(source).suffix.lower()
    if suffix not in FORMATS:
        raise DataFormatError(
            f"cannot tell the format of {source} from its name: name it .jsonl, .json or "
            f".csv, or give the format"
        )
    return FORMATS[suffix]


def read(
    source: str | Path,
    format: Format | None = None,
    on_bad: OnBad = "stop",
    *,
    name: str | None = None,
) -> Iterator[Any]:
    """The records of ``source`` (a path, or ``"-"`` for stdin), in order. ``name`` is what
    errors call the source (a copy of stdin is "stdin" to the user who piped it)."""
    if on_bad not in ("stop", "skip"):
        raise ValueError(f"on_bad must be 'stop' or 'skip', got {on_bad!r}")
    kind = format_of(source, format)
    name = name or _name(source)
    with _open(source) as stream:
        for record in _records(stream, kind, name):
            if isinstance(record, BadRecord) and on_bad == "stop":
                raise record.error()
            yield record


def check(
    source: str | Path, format: Format | None = None, *, name: str | None = None
) -> tuple[int, list[BadRecord]]:
    """One pass over ``source``: how many records, and the bad ones (for refusing bad
    input before a run starts). Reads stdin too, so pass a file (see :func:`spool_stdin`)."""
    kind = format_of(source, format)
    name = name or _name(source)
    count, bad = 0, []
    with _open(source) as stream:
        for record in _records(stream, kind, name):
            if isinstance(record, BadRecord):
                bad.append(replace(record, index=count))
            count += 1
    return count, bad


def spool_stdin(directory: str | Path | None = None) -> Path:
    """Copy stdin to a temporary file, so it can be checked and then read (and resumed)."""
    with tempfile.NamedTemporaryFile(
        "wb", suffix=".jsonl", prefix="symbatcher-stdin-", dir=directory, delete=False
    ) as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle)
    return Path(handle.name)


def _name(source: str | Path) -> str:
    return "stdin" if str(source) == "-" else str(source)


#: how data is decoded: UTF-8, with or without the byte-order mark that Excel and
#: Notepad write; a byte that is not UTF-8 is kept as a lone surrogate, so the record it is
#: in can be named (see :func:`_undecodable`) instead of the whole read failing mid-way
ENCODING, ERRORS = "utf-8-sig", "surrogateescape"
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _open(source: str | Path) -> IO[str]:
    if str(source) == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding=ENCODING, errors=ERRORS, newline="")
    try:
        return open(source, encoding=ENCODING, errors=ERRORS, newline="")
    except OSError as exc:
        raise DataFormatError(f"cannot read {source}: {exc.strerror or exc}") from exc


def _undecodable(text: str) -> tuple[int, str] | None:
    """Where and what is wrong with ``text`` if a byte of it was not UTF-8: the line
    within ``text`` (0 for its first) and the problem, else None."""
    found = _UNDECODABLE.search(text)
    if found is None:
        return None
    start = found.start()
    column = start - text.rfind("\n", 0, start)
    return text.count("\n", 0, start), _not_utf8(found.group(), f"at column {column}")


def _undecodable_field(row: list[str], header: list[str]) -> str | None:
    """What is wrong with a CSV row if a byte of a field was not UTF-8, else None."""
    for column, field in zip(header, row, strict=False):
        if found := _UNDECODABLE.search(field):
            return _not_utf8(found.group(), f"in column {column!r}")
    return None


def _not_utf8(escaped: str, where: str) -> str:
    byte = ord(escaped) - 0xDC00
    return f"not UTF-8 text (byte 0x{byte:02x} {where}); save the file as UTF-8"


def _records(stream: IO[str], kind: Format, name: str) -> Iterator[Any]:
    if kind == "jsonl":
        yield from _jsonl(stream, name)
    elif kind == "csv":
        yield from _csv(stream, name)
    else:
        yield from _json_array(stream, name)


def _jsonl(stream: IO[str], name: str) -> Iterator[Any]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if not line.isascii() and (undecodable := _undecodable(line)):  # ASCII: the fast path
            yield BadRecord(name, number, undecodable[1])
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRecord(name, number, f"not valid JSON ({exc.msg}, column {exc.colno})")


#: characters a CSV field may hold: the csv module's own limit (131,072) refused a row
#: holding a long document; a limit still ends an unclosed quote's read of the whole file
CSV_FIELD_LIMIT = 64 * 1024 * 1024
#: rows read at a time under that limit (it is the process's: put back between reads)
CSV_ROWS_PER_READ = 256


def _csv(stream: IO[str], name: str) -> Iterator[Any]:
    rows = _limited_rows(csv.reader(stream))
    first = next(rows, None)
    if first is None:
        return
    if isinstance(first[1], csv.Error):
        raise DataFormatError(f"{name}, line 1: not a CSV header ({first[1]})", 1) from first[1]
    header = first[1]
    if undecodable := _undecodable(",".join(header)):
        raise DataFormatError(f"{name}, line 1: {undecodable[1]}", 1)
    if not header or len(set(header)) != len(header):
        raise DataFormatError(f"{name}, line 1: the header needs distinct column names", 1)
    for line, row in rows:
        if isinstance(row, csv.Error):
            fault = f"not valid CSV ({row})"
            if "field limit" in str(row):
                fault = f"a field of over {CSV_FIELD_LIMIT:,} characters: an unclosed quote?"
            yield BadRecord(name, line, fault)
            continue
        if not row:
            continue
        if not all(map(str.isascii, row)) and (problem := _undecodable_field(row, header)):
            yield BadRecord(name, line, problem)
            continue
        if len(row) != len(header):
            yield BadRecord(name, line, f"{len(row)} fields where the header has {len(header)}")
            continue
        yield dict(zip(header, row, strict=True))


def _limited_rows(reader: Any) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """A csv reader's rows (or the error reading one), each with the line it ends on, read
    under :data:`CSV_FIELD_LIMIT` a few hundred at a time. The limit is the csv module's,
    for the whole process, so it is put back before they are handed on: other code in the
    process keeps its own."""
    while True:
        batch: list[tuple[int, list[str] | csv.Error]] = []
        before = csv.field_size_limit(CSV_FIELD_LIMIT)
        try:
            while len(batch) < CSV_ROWS_PER_READ:
                try:
                    row: list[str] | csv.Error = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    row = exc
                batch.append((reader.line_num, row))
        finally:
            csv.field_size_limit(before)
        yield from batch
        if len(batch) < CSV_ROWS_PER_READ:
            return


def _json_array(stream: IO[str], name: str) -> Iterator[Any]:
    text = stream.read()
    if undecodable := _undecodable(text):
        line = undecodable[0] + 1
        raise DataFormatError(f"{name}, line {line}: {undecodable[1]}", line)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{name}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})",
            exc.lineno,
        ) from exc
    if not isinstance(data, list):
        raise DataFormatError(
            f"{name}: expected a JSON array of items, got {type(data).__name__} (for "
            f"symbatcher run, a config's items_path picks the list inside it: data.rows)"
        )
    yield from data
