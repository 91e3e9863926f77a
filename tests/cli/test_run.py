"""``symbatcher run`` end to end, on the simulated engine and the local server."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from symai.functional import EngineRepository

from symbatcher.cli import main
from symbatcher.dispatch import Dispatcher
from symbatcher.store.lock import RunLock
from symbatcher.testing import SimulatedEngine
from symbatcher.testing.server import LocalServer
from tests.cli.support import PIPELINES, lines, module_numbers, write_jsonl


def test_run_writes_ordered_results_and_resumes_without_calling_again(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(12)])
    args = [f"{pipelines}:Echo", str(data), "--run-dir", "run", "--out", "out.jsonl"]
    assert main(["run", *args, "--workers", "4", "--progress", "off"]) == 0
    rows = lines(tmp_path / "out.jsonl")
    assert [r["index"] for r in rows] == list(range(12))
    assert all(f"item-{i}" in str(r["output"]) for i, r in enumerate(rows))
    calls = engine.call_count
    assert calls == 12
    assert main(["run", *args, "--progress", "off"]) == 0  # the same command: resume
    assert engine.call_count == calls  # every item was done already


def test_an_engine_symai_does_not_have_is_named_and_leaves_no_run_directory(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "in.jsonl", ["a"])
    (tmp_path / "run.yaml").write_text(
        f"expression: {pipelines}:Echo\nitems: in.jsonl\nrun_dir: run\n"
        "engine:\n  names: [no_such_engine]\n",
        encoding="utf-8",
    )
    assert main(["run", "--config", "run.yaml"]) == 2
    assert "no engine named 'no_such_engine'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_input_stops_before_any_engine_call(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"], bad_after=2)
    code = main(["run", f"{pipelines}:Echo", str(data), "--run-dir", "run"])
    assert code == 3
    assert engine.call_count == 0
    assert "in.jsonl, line 3: not valid JSON" in capsys.readouterr().err


def test_bad_input_can_be_recorded_as_failed_items(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"], bad_after=1)
    code = main(
        ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--on-bad-line", "skip"]
    )
    assert code == 1
    assert engine.call_count == 3
    assert main(["export", "run"]) == 0
    rows = lines(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in rows] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert "line 2" in rows[1]["error"]["message"]  # type: ignore[index]


def test_csv_items_bound_by_name(pipelines: str, engine: SimulatedEngine, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("text,stars\ngreat,5\nawful,1\n", encoding="utf-8")
    args = [f"{pipelines}:Named", "in.csv", "--run-dir", "run", "--as", "review"]
    code = main(["run", *args, "--out", "out.csv"])
    assert code == 0
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["input.text"], r["input.stars"]) for r in rows] == [("great", "5"), ("awful", "1")]


def test_stdin(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'"x"\n"y"\n')))
    assert main(["run", f"{pipelines}:Echo", "-", "--run-dir", "run", "--out", "o.jsonl"]) == 0
    assert [r["input"] for r in lines(tmp_path / "o.jsonl")] == ["x", "y"]
    assert (tmp_path / "run" / "input.jsonl").is_file()  # kept, so the run can resume


def _stdin(monkeypatch: pytest.MonkeyPatch, items: list[str]) -> None:
    text = "".join(json.dumps(item) + "\n" for item in items)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_a_run_the_directory_refuses_leaves_what_retry_of_its_run_reads(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second ``run`` into a directory of another run (other data on stdin, another
    expression) is refused; it must not replace that run's command or copy of stdin."""
    (tmp_path / "blocked").touch()
    _stdin(monkeypatch, ["x", "y", "z"])
    run = ["run", "-", "--run-dir", "run", "--retries", "1", "--progress", "off"]
    assert main([run[0], f"{pipelines}:Blocked", *run[1:]]) == 1
    kept = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if "json" in p.name}
    assert set(kept) == {"command.json", "input.jsonl"}
    capsys.readouterr()

    _stdin(monkeypatch, ["other"])
    assert main([run[0], f"{pipelines}:Blocked", *run[1:]]) == 2
    assert "item 0 of the dataset differs" in capsys.readouterr().err
    data = write_jsonl(tmp_path / "in.jsonl", ["x", "y", "z"])
    assert main(["run", f"{pipelines}:Echo", str(data), "--run-dir", "run"]) == 2
    err = capsys.readouterr().err
    assert "another expression" in err and "--force on the command line" in err
    now = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if "json" in p.name}
    assert now == kept  # nothing replaced, and no copy of the refused stdin left behind
    assert engine.call_count == 0

    (tmp_path / "blocked").unlink()
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert engine.call_count == 3
    assert main(["export", "run"]) == 0
    rows = lines(tmp_path / "run" / "results.jsonl")
    assert [(r["input"], r["status"]) for r in rows] == [
        ("x", "succeeded"),
        ("y", "succeeded"),
        ("z", "succeeded"),
    ]


def test_a_resume_with_more_items_on_stdin_keeps_the_longer_copy(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = ["run", f"{pipelines}:Echo", "-", "--run-dir", "run", "--progress", "off"]
    _stdin(monkeypatch, ["a", "b"])
    assert main(run) == 0
    _stdin(monkeypatch, ["a", "b", "c"])
    assert main(run) == 0
    assert engine.call_count == 3
    copy = (tmp_path / "run" / "input.jsonl").read_text(encoding="utf-8")
    assert copy.split() == ['"a"', '"b"', '"c"']
    assert sorted(p.name for p in (tmp_path / "run").glob("*.jsonl")) == ["input.jsonl"]


def test_a_run_refused_before_it_began_leaves_no_run_directory(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", f"{pipelines}:Echo", "missing.jsonl", "--run-dir", "run"]) == 2
    assert "cannot read missing.jsonl" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'"a"\n{broken\n')))
    assert main(["run", f"{pipelines}:Echo", "-", "--run-dir", "run"]) == 3
    assert "stdin, line 2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()  # a directory the user made stays, empty as it was
    assert main(["run", f"{pipelines}:Echo", "missing.jsonl", "--run-dir", "mine"]) == 2
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    assert engine.call_count == 0


@pytest.mark.parametrize(
    ("document", "items_path", "named"),
    [
        ('{"data": {"rows": ["a"]}}', "data.nope", "has nothing at items_path 'data.nope'"),
        ("{broken", "data.rows", "doc.json: not valid JSON"),
        (None, "data.rows", "cannot read doc.json"),
        ('{"data": {"rows": ["a"]}}', None, "items_path picks the list inside it"),
    ],
)
def test_a_json_document_s_problems_are_named_and_leave_no_run_directory(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    document: str | None,
    items_path: str | None,
    named: str,
) -> None:
    if document is not None:
        (tmp_path / "doc.json").write_text(document, encoding="utf-8")
    config = f"expression: {pipelines}:Echo\nitems: doc.json\nrun_dir: run\n"
    if items_path:
        config += f"items_path: {items_path}\n"
    (tmp_path / "run.yaml").write_text(config, encoding="utf-8")
    assert main(["run", "--config", "run.yaml"]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and engine.call_count == 0


def test_fail_fast_ends_with_the_first_error_in_a_line_and_the_rest_resumable(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(40)])
    (tmp_path / "blocked").touch()
    run = ["run", f"{pipelines}:Blocked", str(data), "--run-dir", "run", "--progress", "off"]
    fail_fast = [*run, "--error-handling", "fail_fast", "--retries", "1", "--workers", "2"]
    assert main(fail_fast) == 1
    err = capsys.readouterr().err
    assert "symbatcher: fail_fast: RuntimeError: blocked (raised by item " in err
    assert "failed: 40 items: 0 succeeded, " in err and "Traceback" not in err
    (tmp_path / "blocked").unlink()
    assert main(["retry", "run", "--progress", "off"]) == 0  # kept in command.json: fail_fast
    assert main(run) == 0  # the rest, never reached
    assert engine.call_count == 40


def test_params_build_the_expression_reach_its_calls_and_stay_with_the_run(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from symbatcher.testing import use_engine

    data = write_jsonl(tmp_path / "in.jsonl", ["ok-1", "flaky", "ok-2"])
    run = ["run", f"{pipelines}:Styled", str(data), "--run-dir", "run", "--retries", "1"]
    params = ["--param", "style=Brief", "--param", 'tone="warm"', "--param", "n=3"]
    with use_engine(SimulatedEngine(fail_on="flaky", fail_times=1)) as flaky:
        assert main([*run, *params, "--progress", "off"]) == 1  # the flaky item failed
        assert all("Brief, warm" in prompt for prompt in flaky.calls)  # __init__ and forward
        assert main([*run, "--param", "style=Long", "--param", "tone=warm"]) == 2
        err = capsys.readouterr().err
        assert "started with another expression or other parameters" in err
        assert 'It ran with params {"style": "Brief", "tone": "warm", "n": 3}, ' in err
        assert 'now {"style": "Long", "tone": "warm"}' in err
        assert main(["retry", "run", "--progress", "off"]) == 0  # with the run's params
        assert len(flaky.calls) == 4 and "Brief, warm" in flaky.calls[-1]
    stored = json.loads((tmp_path / "run" / "command.json").read_text(encoding="utf-8"))
    assert stored["params"] == {"style": "Brief", "tone": "warm", "n": 3}


def test_params_from_a_config_and_their_problems(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a"])
    config = tmp_path / "run.yaml"
    config.write_text(
        f"expression: {pipelines}:Styled\nitems: in.jsonl\nparams: {{style: Short}}\n",
        encoding="utf-8",
    )
    assert main(["run", "--config", str(config), "--param", "tone=dry", "--progress", "off"]) == 0
    assert engine.calls and "Short, dry" in engine.calls[0]  # the command line's on top
    config.write_text("params: {style: Short, day: 2024-01-01}\n", encoding="utf-8")
    assert main(["run", f"{pipelines}:Styled", str(data), "--config", str(config)]) == 2
    assert "`params`: 'day' holds a date; parameters are JSON values" in capsys.readouterr().err
    base = ["run", f"{pipelines}:Styled", str(data), "--run-dir", "bad"]
    assert main([*base, "--param", "style=x", "--param", "input=3"]) == 2
    assert "--param: 'input' is the keyword each item is passed as" in capsys.readouterr().err
    assert main([*base, "--param", "style=x", "--as", "text", "--param", "text=3"]) == 2
    assert "--param: 'text' is the keyword each item is passed as" in capsys.readouterr().err
    assert main([*base, "--param", "a b=3"]) == 2
    assert "--param: 'a b' is not a keyword argument name" in capsys.readouterr().err
    assert main([*base, "--param", "tone=dry"]) == 2  # style is still missing
    err = capsys.readouterr().err
    assert "Styled cannot be built with the parameters tone" in err and "'style'" in err
    with pytest.raises(SystemExit):
        main([*base, "--param", "style"])
    assert "expected KEY=VALUE, got 'style'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and len(engine.calls) == 1


def test_a_trial_with_limit_says_what_the_rest_costs_and_the_run_goes_on_from_it(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(30)])
    rows = data.read_text(encoding="utf-8").splitlines()
    rows[3], rows[25] = "{broken", "{broken too"  # one in the trial, one after it
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    run += ["--price", "simulated=1000,2000", "--on-bad-line", "skip"]
    assert main([*run, "--limit", "10"]) == 1  # the bad record in the first 10 failed
    err = capsys.readouterr().err
    assert "note: 1 bad record(s) after the first 10, which the whole run meets: " in err
    assert "line 26: not valid JSON" in err
    sent = " ".join(engine.calls)
    assert engine.call_count == 9 and all(f"item-{i}" in sent for i in (0, 1, 2, 4, 5, 6, 7, 8, 9))
    assert "10 items: 9 succeeded, 1 failed, 0 pending" in err
    per_item = float(err.split(" an item) and ")[0].rsplit("($", 1)[1])
    assert per_item > 0 and "20 records of the data not run yet: about $" in err
    assert "the same command without --limit runs them" in err
    assert main(["status", "run"]) == 0  # status says it was a trial, too
    assert "\n  20 records of the data not run yet: about $" in capsys.readouterr().out
    rows[3] = json.dumps("item-3")  # fixed in place: retry reads it again from the file
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert engine.call_count == 10
    assert main([*run, "--limit", "15"]) == 0  # the first 10 done: 5 more run
    assert (
        engine.call_count == 15 and "15 records of the data not run yet" in capsys.readouterr().err
    )
    assert main([*run, "--out", "out.jsonl"]) == 1  # the rest: the second bad record fails
    assert engine.call_count == 29
    err = capsys.readouterr().err
    assert "30 items: 29 succeeded, 1 failed" in err and "not run yet" not in err
    assert [r["index"] for r in lines(tmp_path / "out.jsonl")] == list(range(30))


def test_a_trial_of_a_json_documents_items_goes_on_with_all_of_them(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "doc.json"
    document.write_text(json.dumps({"batch": {"items": list(range(12))}}), encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"expression: {pipelines}:Echo\nitems: doc.json\nitems_path: batch.items\n",
        encoding="utf-8",
    )
    run = ["run", "--config", str(config), "--progress", "off"]
    assert main([*run, "--limit", "4"]) == 0
    err = capsys.readouterr().err
    assert engine.call_count == 4 and "$" not in err.split("\n", 1)[1]  # a free model
    told = err.split("8 records of the data not run yet: ", 1)[1]
    tokens, per_item = (
        int(figure) for figure in re.findall(r"(\d+) tokens \((\d+) an item", told)[0]
    )
    assert per_item > 0 and abs(tokens - 8 * per_item) <= 8  # the rest, at the trial's rate
    assert main(run) == 0  # not refused as another dataset: the trial was its first items
    assert engine.call_count == 12
    assert main([*run, "--limit", "0"]) == 2
    assert "--limit: Input should be greater than 0" in capsys.readouterr().err


def test_data_with_no_records_runs_nothing_and_leaves_nothing(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    for name in ("empty.jsonl", "header.csv"):
        assert main(["run", f"{pipelines}:Echo", name, "--run-dir", "new"]) == 0
        assert f"symbatcher: {name} holds no records; nothing ran" in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b"])
    assert (
        main(["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]) == 0
    )
    kept = (tmp_path / "run" / "command.json").read_bytes()
    assert main(["run", f"{pipelines}:Echo", "empty.jsonl", "--run-dir", "run"]) == 0
    assert (tmp_path / "run" / "command.json").read_bytes() == kept and engine.call_count == 2
    capsys.readouterr()
    assert main(["status", "run"]) == 0
    assert "2 items: 2 succeeded" in capsys.readouterr().out


def test_a_config_beside_its_module_runs_from_another_directory(
    engine: SimulatedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"beside_{next(module_numbers)}"
    project = tmp_path / "project"
    project.mkdir()
    (project / f"{name}.py").write_text(PIPELINES, encoding="utf-8")
    write_jsonl(project / "in.jsonl", ["a", "b"])
    (project / "run.yaml").write_text(
        f"expression: {name}:Echo\nitems: in.jsonl\nrun_dir: run\n", encoding="utf-8"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where no such module is
    path_before = list(sys.path)
    assert main(["run", "--config", str(project / "run.yaml"), "--progress", "off"]) == 0
    assert engine.call_count == 2 and sys.path == path_before
    stored = json.loads((project / "run" / "command.json").read_text(encoding="utf-8"))
    assert stored["import_dirs"] == [str(elsewhere), str(project)]


def test_rate_limits_from_the_command_line(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from symbatcher.testing import use_engine

    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(24)])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--workers", "8"]
    with use_engine(SimulatedEngine(latency=(0.005, 0.02))) as engine:
        assert main([*run, "--max-concurrency", "2", "--rpm", "60000", "--progress", "off"]) == 0
        assert engine.call_count == 24 and engine.max_concurrency == 2  # 8 workers, 2 at once
    stored = json.loads((tmp_path / "run" / "command.json").read_text(encoding="utf-8"))
    assert (stored["engine"]["max_concurrency"], stored["engine"]["rpm"]) == (2, 60000)
    assert main([*run, "--rpm", "0", "--run-dir", "other"]) == 2
    assert "--rpm: Input should be greater than 0" in capsys.readouterr().err
    assert main([*run, "--max-concurrency", "0", "--run-dir", "other"]) == 2
    assert "--max-concurrency: Input should be greater than 0" in capsys.readouterr().err


def test_usage_errors_name_the_problem(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a"])
    assert main(["run", f"{pipelines}:Missing", str(data)]) == 2
    assert "has no 'Missing'" in capsys.readouterr().err
    assert main(["run", f"{pipelines}:Ecoh", str(data)]) == 2
    assert "has no 'Ecoh'; did you mean 'Echo'?" in capsys.readouterr().err
    assert main(["run", "no_such_module:X", str(data)]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["run", f"{pipelines}:Echo", "data.txt"]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["run", f"{pipelines}:Styled", str(data), "--run-dir", "styled"]) == 2
    err = capsys.readouterr().err  # a traceback from a worker, and a run directory, before
    assert f"{pipelines}:Styled cannot be built with no arguments" in err and "'style'" in err
    assert not (tmp_path / "styled").exists()
    assert main(["run", f"{pipelines}:Keyless", str(data), "--run-dir", "keyless"]) == 2
    err = capsys.readouterr().err
    assert "could not instantiate Keyless: RuntimeError: MY_TOOL_KEY is not set" in err
    assert "Traceback" not in err and not (tmp_path / "keyless").exists()
    assert main(["status", "nowhere"]) == 2
    assert main(["retry", str(tmp_path)]) == 2
    assert engine.call_count == 0


def test_a_config_file_declares_the_batch(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path
) -> None:
    (tmp_path / "data.json").write_text(
        json.dumps({"batch": {"reviews": [{"text": "one"}, {"text": "two"}]}}), encoding="utf-8"
    )
    (tmp_path / "run.yaml").write_text(
        f"expression: {pipelines}:Named\n"
        "items: data.json\n"
        "items_path: batch.reviews\n"
        "as: review\n"
        "workers: 2\n"
        "run_dir: state\n"
        "out: results.jsonl\n"
        "engine:\n  max_concurrency: 1\n",
        encoding="utf-8",
    )
    assert main(["run", "--config", "run.yaml", "--workers", "3"]) == 0
    rows = lines(tmp_path / "results.jsonl")
    assert ["one" in str(rows[0]["output"]), "two" in str(rows[1]["output"])] == [True, True]
    stored = json.loads((tmp_path / "state" / "command.json").read_text(encoding="utf-8"))
    assert stored["workers"] == 3  # the command line wins over the file
    assert stored["engine"]["max_concurrency"] == 1


def test_a_config_caps_the_batches_out_at_once_so_they_fill(
    pipelines: str, tmp_path: Path, dispatchers: list[Dispatcher]
) -> None:
    from symbatcher.testing import SimulatedBatchEngine, use_engine

    write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(32)])
    (tmp_path / "run.yaml").write_text(
        f"expression: {pipelines}:Echo\nitems: in.jsonl\nworkers: 8\nbatch_size: 4\n"
        "engine:\n  max_inflight_batches: 1\n  linger: 0.02\n",
        encoding="utf-8",
    )
    with use_engine(SimulatedBatchEngine(latency=0.02)) as gpu:  # serves one batch at a time
        assert main(["run", "--config", "run.yaml", "--progress", "off"]) == 0
    assert gpu.max_concurrency == 1
    assert sum(gpu.batches) == 32 and len(gpu.batches) <= 10  # 8 workers wait, 4 a batch
    assert [d.linger for d in dispatchers] == [0.02]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("workers: 4\nwobble: 1\n", "`wobble`: unknown key"),
        ("worker: 4\n", "`worker`: unknown key (did you mean `workers`?)"),
        ("engine:\n  rmp: 60\n", "`engine.rmp`: unknown key (did you mean `rpm`?)"),
        ("bach_size: 4\n", "`bach_size`: unknown key (did you mean `batch_size`?)"),
        ("workers: lots\n", "`workers`: Input should be a valid integer"),
        ("workers: 0\n", "`workers`: Input should be greater than 0"),
        ("engine:\n  rpm: -1\n", "`engine.rpm`: Input should be greater than 0"),
        ("error_handling: sometimes\n", "`error_handling`: Input should be 'continue'"),
        ("- a\n- b\n", "expected a mapping"),
        ("workers: [\n", "is not valid YAML"),
        ("prices:\n  gpt-x: [1]\n", "`prices.gpt-x.1`: Field required"),
        ("prices:\n  gpt-x: [1, -2]\n", "`prices.gpt-x.1`: Input should be greater than or"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    (tmp_path / "run.yaml").write_text(text, encoding="utf-8")
    assert main(["run", "--config", str(tmp_path / "run.yaml")]) == 2
    assert named in capsys.readouterr().err


def test_missing_expression_or_data_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "give EXPRESSION and DATA" in capsys.readouterr().err
    assert main(["run", "x:Y", "d.jsonl", "--workers", "0"]) == 2
    assert "--workers: Input should be greater than 0" in capsys.readouterr().err


def test_the_published_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    published = Path(__file__).parents[2] / "schemas" / "run-config.schema.json"
    assert json.loads(published.read_text(encoding="utf-8")) == printed
    assert printed["additionalProperties"] is False and "as" in printed["properties"]


def test_a_budget_stops_the_run_with_its_own_exit_code(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from symbatcher.testing import use_engine

    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(40)])
    priced = SimulatedEngine(model="claude-sonnet-4-5")  # symai has a price for it
    with use_engine(priced):
        args = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--workers", "1"]
        assert main([*args, "--max-cost", "0.0003"]) == 4
        assert 0 < priced.call_count < 40
        err = capsys.readouterr().err
        pending = 40 - priced.call_count  # one call per item, one worker: none in flight
        assert f"budget_reached: 40 items: {priced.call_count} succeeded, 0 failed, " in err
        needed = float(err.split(f"{pending} items pending: about $")[1].split(" ")[0])
        spent = float(err.split("; cost $")[1].split("\n")[0])
        told = float(err.split("all of it needs --max-cost of about $")[1].split("\n")[0])
        assert needed > 0 and told == pytest.approx(spent * 40 / priced.call_count, rel=0.1)
        assert main([*args, "--max-cost", "1"]) == 0  # a larger budget finishes the rest
    assert priced.call_count == 40  # nothing paid for twice


def test_engine_url_sends_the_calls_to_that_server_and_puts_symai_s_engine_back(
    pipelines: str,
    engine: SimulatedEngine,
    local_server: LocalServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(6)])
    args = [f"{pipelines}:Echo", str(data), "--run-dir", "run", "--out", "out.jsonl"]
    assert main(["run", *args, "--engine-url", local_server.url, "--progress", "off"]) == 0
    rows = lines(tmp_path / "out.jsonl")
    assert [r["status"] for r in rows] == ["succeeded"] * 6
    # symai's vLLM engine asked the server, which echoes each item's own prompt
    assert all(str(r["output"]).startswith("echo:") for r in rows)
    assert all(f"item-{i}" in str(r["output"]) for i, r in enumerate(rows))
    assert local_server.stats()["ok"] == 6
    assert engine.call_count == 0
    assert EngineRepository.get("neurosymbolic") is engine  # the registered one is back
    assert main(["status", "run", "--json"]) == 0  # the model the server serves, not "vllm"
    assert json.loads(capsys.readouterr().out)["model"] == "symbatcher-local"


def test_a_server_that_does_not_answer_is_named_before_anything_runs(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as free:  # a port nobody listens on once it is closed
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    data = write_jsonl(tmp_path / "in.jsonl", ["a"])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--engine-url"]
    assert main([*run, url]) == 2
    err = capsys.readouterr().err
    assert url in err and "GET /v1/models" in err
    assert main([*run, url, "--engine-kind", "llamacpp"]) == 2
    assert "GET /props" in capsys.readouterr().err  # what symai's llama.cpp engine asks
    with pytest.raises(SystemExit) as refused:  # as every command: refused as it is read
        main([*run, "127.0.0.1:8000"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--engine-url" in err and "expected a URL like http://127.0.0.1:8000" in err
    assert not (tmp_path / "run").exists()
    assert main(["serve", "--dir", "svc", "--engine-url", url]) == 2  # nor does a service start
    assert url in capsys.readouterr().err
    assert not (tmp_path / "svc").exists()
    assert engine.call_count == 0


def test_the_summary_names_the_failures_by_error_type(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(5)])
    (tmp_path / "blocked").touch()
    run = ["run", f"{pipelines}:Blocked", str(data), "--run-dir", "run", "--retries", "1"]
    assert main([*run, "--progress", "off"]) == 1
    line = "5 failed with RuntimeError: blocked (items 0, 1, 2 and 2 more)"
    assert line in capsys.readouterr().err
    assert main(["status", "run"]) == 0
    out = capsys.readouterr().out
    assert "5 items: 0 succeeded, 5 failed, 0 pending" in out and line in out
    assert "symbatcher export run" in out  # where every error is


def _spent(run_dir: Path) -> tuple[float, int, int]:
    """The run's cost, and the prompt and completion tokens of its calls."""
    from symbatcher.store.sqlite import SQLiteStore
    from symbatcher.store.summary import summarize

    store = SQLiteStore(run_dir)
    records = list(store.items())
    prompt = sum(r.prompt_tokens for r in records)
    completion = sum(r.completion_tokens for r in records)
    return summarize(store).cost, prompt, completion


def test_prices_given_price_a_model_symai_does_not_know_and_the_command_line_wins(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(10)])
    run = ["run", f"{pipelines}:Echo", str(data), "--progress", "off", "--run-dir"]
    # 'simulated' is in no symai table: priced by the option (and kept for retry)
    assert main([*run, "priced", "--price", "simulated=1000,2000", "--max-cost", "5"]) == 0
    cost, prompt, completion = _spent(tmp_path / "priced")
    assert prompt > 0 and cost == pytest.approx((prompt * 1000 + completion * 2000) / 1e6)
    stored = json.loads((tmp_path / "priced" / "command.json").read_text(encoding="utf-8"))
    assert stored["prices"] == {"simulated": [1000.0, 2000.0]}
    assert "no price" not in caplog.text
    (tmp_path / "run.yaml").write_text(
        f"expression: {pipelines}:Echo\nitems: in.jsonl\nrun_dir: mixed\n"
        "prices:\n  simulated: [1000, 2000]\n  other: [1, 1]\n",
        encoding="utf-8",
    )
    config = ["run", "--config", "run.yaml", "--progress", "off"]
    assert main([*config, "--price", "simulated=0,0"]) == 0
    assert _spent(tmp_path / "mixed")[0] == 0.0  # the command line's price won
    stored = json.loads((tmp_path / "mixed" / "command.json").read_text(encoding="utf-8"))
    assert stored["prices"] == {"simulated": [0.0, 0.0], "other": [1.0, 1.0]}
    assert engine.call_count == 20


def test_a_budget_with_an_unpriced_model_halts_and_the_same_command_priced_goes_on(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(40)])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    assert main([*run, "--max-cost", "5", "--workers", "2"]) == 1  # not a success
    err = capsys.readouterr().err
    assert err.startswith("failed: 40 items: 0 succeeded, 0 failed, ")  # none failed: halted
    assert "  stopped: no price known for model 'simulated'" in err
    assert "--price simulated=INPUT,OUTPUT" in err and "run the same command to go on" in err
    halted = engine.call_count
    assert halted == 1  # the first item runs alone under a budget: one call paid, not one a worker
    assert main([*run, "--max-cost", "5", "--price", "simulated=1,2"]) == 0
    assert "40 items: 40 succeeded, 0 failed, 0 pending" in capsys.readouterr().err
    assert engine.call_count == halted + 40


@pytest.mark.parametrize(
    "given", ["simulated", "simulated=1", "=1,2", "m=a,b", "m=-1,2", "m=1,nan"]
)
def test_a_malformed_price_is_refused_naming_the_form(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "x:Y", "d.jsonl", "--price", given])
    assert exited.value.code == 2
    assert "MODEL=INPUT,OUTPUT" in capsys.readouterr().err


def test_a_self_hosted_server_s_calls_are_free_unless_priced_by_its_model_id(
    pipelines: str,
    engine: SimulatedEngine,
    local_server: LocalServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(4)])
    run = ["run", f"{pipelines}:Echo", str(data), "--engine-url", local_server.url]
    assert main([*run, "--run-dir", "free", "--max-cost", "1", "--progress", "off"]) == 0
    cost, prompt, _ = _spent(tmp_path / "free")
    assert cost == 0.0 and prompt > 0  # tokens counted, nothing billed, no budget error
    assert "no price" not in caplog.text
    # priced by the id the server gives its model (symai's vLLM engine: server_model)
    price = "symbatcher-local=1000000,0"
    assert main([*run, "--run-dir", "priced", "--price", price, "--progress", "off"]) == 0
    cost, prompt, _ = _spent(tmp_path / "priced")
    assert cost == pytest.approx(prompt)  # 1 USD per prompt token
    assert local_server.stats()["ok"] == 8 and engine.call_count == 0


def test_an_interrupted_run_says_how_to_go_on_and_its_resume_runs_the_rest(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(8)])
    run = ["run", f"{pipelines}:Interrupted", str(data), "--run-dir", "run", "--workers", "1"]
    (tmp_path / "interrupt").touch()
    assert main([*run, "--progress", "off"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; what finished is kept, run the same command to resume" in err
    assert main(["status", "run"]) == 0
    out = capsys.readouterr().out
    assert "8 items: 3 succeeded, 0 failed, 1 interrupted, 4 pending" in out  # item 3's
    assert "run again when the same command runs again" in out and "running now" not in out
    lock = RunLock(tmp_path / "run")  # while a run goes on there, started items are in flight
    lock.acquire()
    try:
        assert main(["status", "run"]) == 0
        out = capsys.readouterr().out
        assert f"running now, by pid {os.getpid()}" in out
        assert "8 items: 3 succeeded, 0 failed, 1 running, 4 pending" in out
        assert "run again" not in out
        assert "  this run: no item finished yet, 0 s in" in out  # the 3 are an earlier run's
        note = tmp_path / "run" / "holder.json"  # as if it had started 10 s ago and since
        started = time.time() - 10  # finished two items
        note.write_text(json.dumps({**json.loads(note.read_text()), "started": started}))
        with sqlite3.connect(tmp_path / "run" / "state.sqlite") as conn:
            conn.execute("UPDATE items SET completed_at = ? WHERE idx IN (0, 1)", (started + 1,))
            conn.execute("UPDATE items SET completed_at = ? WHERE idx = 2", (started - 60,))
        assert main(["status", "run"]) == 0
        out = capsys.readouterr().out
        pace = "  this run: 2 items finished in 10 s (0.2 items/s); the 5 left take about 25 s"
        assert f"{pace} at that pace" in out  # a free model: no cost to tell
        with sqlite3.connect(tmp_path / "run" / "state.sqlite") as conn:
            conn.execute("UPDATE items SET cost = 0.25 WHERE idx IN (0, 1, 2)")
        assert main(["status", "run"]) == 0
        assert f"{pace} and about $1.25 ($0.25 an item) at that pace" in capsys.readouterr().out
    finally:
        lock.release()
    (tmp_path / "interrupt").unlink()
    engine.reset()
    assert main([*run, "--progress", "off"]) == 0  # the same command
    assert engine.call_count == 5  # item 3 and the four never reached
    assert main(["status", "run"]) == 0
    assert "8 items: 8 succeeded, 0 failed, 0 pending" in capsys.readouterr().out


def test_engine_timeout_fails_a_stalled_request_and_retry_keeps_it(
    pipelines: str, local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_server.configure(slow_rate=1.0, slow_latency=3.0)  # a server that stalls
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b"])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    url = ["--engine-url", local_server.url, "--engine-timeout", "0.2", "--retries", "1"]
    assert main([*run, *url]) == 1  # not a wait of 3 s per request: failed, named
    assert "2 failed with EngineTransportError" in capsys.readouterr().err
    stored = json.loads((tmp_path / "run" / "command.json").read_text(encoding="utf-8"))
    assert stored["engine"]["timeout"] == 0.2
    local_server.configure(slow_rate=0.0)
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert local_server.stats()["ok"] == 2


def test_engine_timeout_without_a_server_is_refused(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ["run", f"{pipelines}:Echo", "in.jsonl", "--run-dir", "run", "--engine-timeout", "5"]
    assert main(run) == 2
    assert "--engine-timeout for --engine-url" in capsys.readouterr().err
    assert main(["serve", "--dir", "svc", "--engine-timeout", "5"]) == 2  # the same rule
    assert "--engine-timeout for --engine-url" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "svc").exists()


def test_off_a_terminal_a_run_says_where_it_stands_in_a_line_now_and_then(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run in a container's log showed nothing until its end, which can be hours."""
    import symbatcher.cli.progress as progress

    monkeypatch.setattr(progress, "PROGRESS_EVERY", 0.0)  # a line per item, to see them
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(6)])
    assert main(["run", f"{pipelines}:Echo", str(data), "--workers", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("symbatcher: ") and "items/s" in line]
    assert [line.split(" items (")[0] for line in lines] == [
        f"symbatcher: {n}/6" for n in range(1, 7)
    ]
    assert lines[0].startswith("symbatcher: 1/6 items (16.7%), ") and "left" in lines[0]
    assert err[-2].startswith("completed: 6 items: 6 succeeded")  # then the summary, once
    assert (
        main(["run", f"{pipelines}:Echo", str(data), "--run-dir", "quiet", "--progress", "off"])
        == 0
    )
    assert "symbatcher: 1/6" not in capsys.readouterr().err
