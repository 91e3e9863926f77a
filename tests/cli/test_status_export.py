"""``symbatcher status`` and ``export``: what a run directory holds, read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from symbatcher.cli import main
from symbatcher.testing import SimulatedEngine
from tests.cli.support import write_jsonl


def test_csv_export_writes_text_as_text_and_other_values_as_json(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["plain, text", {"k": [1, 2]}, 7])
    args = [f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    assert main(["run", *args, "--out", "out.csv"]) == 0
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == ["plain, text", "", "7"]
    assert [r["input.k"] for r in rows] == ["", "[1, 2]", ""]  # a dict: a column per key
    assert all(r["status"] == "succeeded" and r["error_type"] == "" for r in rows)
    err = capsys.readouterr().err
    assert "  this run: 3 items (3 ok, 0 failed) in " in err  # how fast, beside the counts
    assert "3 items -> out.csv" in err


def test_csv_columns_keep_the_order_the_data_and_the_expression_gave_their_keys(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path
) -> None:
    data = tmp_path / "people.csv"
    data.write_text("name,age,city\nAda,36,London\nAlan,41,Wilmslow\n", encoding="utf-8")
    args = [f"{pipelines}:Verdict", str(data), "--run-dir", "run", "--progress", "off"]
    assert main(["run", *args, "--out", "out.csv"]) == 0
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header, first = next(reader), next(reader)
    assert header[:7] == [
        "index",
        "status",
        "input.name",
        "input.age",
        "input.city",
        "output.verdict",
        "output.length",
    ]  # as the file and the expression had them, not sorted
    assert first[:5] == ["0", "succeeded", "Ada", "36", "London"]
    calls = engine.call_count
    assert main(["run", *args]) == 0  # a resume: the same items, none run again
    assert engine.call_count == calls


def test_status_of_several_run_directories(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, size in (("runs/a", 2), ("runs/b", 3)):
        data = write_jsonl(tmp_path / f"{size}.jsonl", list(range(size)))
        run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", name, "--progress", "off"]
        assert main(run) == 0
    (tmp_path / "runs" / "notes.txt").write_text("not a run", encoding="utf-8")
    capsys.readouterr()
    assert main(["status", "runs/a", "runs/b", "runs/notes.txt"]) == 2  # as `runs/*` gives
    out, err = capsys.readouterr()
    assert "runs/a: 2 items: 2 succeeded" in out and "runs/b: 3 items: 3 succeeded" in out
    assert err == "symbatcher: no run state in runs/notes.txt\n"
    assert main(["status", "runs/a", "runs/b", "--json"]) == 2
    assert "--json takes one run directory" in capsys.readouterr().err


def test_results_to_stdout_for_a_pipe(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    assert main([*run, "--out", "-"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]  # nothing but the rows
    assert [(r["index"], r["input"]) for r in rows] == [(0, "a"), (1, "b"), (2, "c")]
    assert "3 items -> stdout" in err and not (tmp_path / "-").exists()
    assert main(["export", "run", "--format", "csv", "--out", "-"]) == 0
    out, err = capsys.readouterr()
    table = list(csv.DictReader(out.splitlines()))
    assert [r["input"] for r in table] == ["a", "b", "c"] and "3 items -> stdout" in err


def test_status_export_and_retry_find_the_run_where_run_keeps_it_by_default(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` without ``--run-dir`` keeps its state in ./symbatcher-run; the commands that
    read a run look there too, so the one directory need never be named."""
    assert main(["status"]) == 2  # before any run: says where it looked
    assert "symbatcher-run" in capsys.readouterr().err
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"])
    (tmp_path / "blocked").touch()
    assert main(["run", f"{pipelines}:Blocked", str(data), "--progress", "off"]) == 1
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "symbatcher-run: 3 items: 0 succeeded, 3 failed" in capsys.readouterr().out
    (tmp_path / "blocked").unlink()
    assert main(["retry", "--progress", "off"]) == 0
    assert "3 succeeded, 0 failed" in capsys.readouterr().err
    assert main(["export"]) == 0
    exported = tmp_path / "symbatcher-run" / "results.jsonl"
    assert [json.loads(line)["status"] for line in exported.read_text().splitlines()] == [
        "succeeded"
    ] * 3
