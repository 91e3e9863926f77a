"""``symbatcher retry``: failed and interrupted items again, with what the run had."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from symbatcher.cli import main
from symbatcher.testing import SimulatedEngine
from symbatcher.testing.server import LocalServer
from tests.cli.support import lines, write_jsonl


def test_retry_reads_a_fixed_bad_record_again(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"], bad_after=1)
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--on-bad-line", "skip"]
    assert main(run) == 1
    assert main(["retry", "run"]) == 1  # still bad: fails again, with no engine call
    assert engine.call_count == 3
    assert main(["export", "run"]) == 0
    failed = lines(tmp_path / "run" / "results.jsonl")[1]
    assert "line 2: not valid JSON" in failed["error"]["message"]  # type: ignore[index]
    write_jsonl(data, ["a", "fixed", "b", "c"])  # the user fixes the line in place
    assert main(["retry", "run"]) == 0
    assert engine.call_count == 4
    assert main(["export", "run"]) == 0
    rows = lines(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in rows] == ["succeeded"] * 4
    assert rows[1]["input"] == "fixed" and "fixed" in str(rows[1]["output"])


def test_retry_refuses_bad_records_of_data_that_moved(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"], bad_after=1)
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--on-bad-line", "skip"]
    assert main(run) == 1
    write_jsonl(data, ["a", "b", "c"])  # the bad line deleted: every later record moved
    assert main(["retry", "run"]) == 2
    assert "now has 3 records where the run read 4" in capsys.readouterr().err
    data.unlink()
    assert main(["retry", "run"]) == 2
    assert "which is gone" in capsys.readouterr().err
    assert engine.call_count == 3


@pytest.mark.parametrize("page", [2, 512])
def test_retry_runs_every_failed_item_again_reading_them_a_page_at_a_time(
    pipelines: str,
    engine: SimulatedEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: int,
) -> None:
    from symbatcher.store import pages

    monkeypatch.setattr(pages, "PAGE", page)
    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(9)])
    (tmp_path / "blocked").touch()
    run = ["run", f"{pipelines}:Blocked", str(data), "--run-dir", "run", "--retries", "1"]
    assert main([*run, "--progress", "off"]) == 1
    (tmp_path / "blocked").unlink()
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert sorted(int(c.split("item-")[1][0]) for c in engine.calls) == list(range(9))
    assert main(["export", "run"]) == 0
    rows = lines(tmp_path / "run" / "results.jsonl")
    assert [r["status"] for r in rows] == ["succeeded"] * 9
    assert all(f"item-{i}" in str(r["output"]) for i, r in enumerate(rows))


def test_retry_runs_the_failed_items_again(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from symbatcher.testing import use_engine

    data = write_jsonl(tmp_path / "in.jsonl", ["ok-1", "flaky", "ok-2"])
    with use_engine(SimulatedEngine(fail_on="flaky", fail_times=1)) as flaky:
        code = main(["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--retries", "1"])
        assert code == 1
        assert main(["status", "run"]) == 0
        assert "2 succeeded, 1 failed" in capsys.readouterr().out
        assert main(["retry", "run"]) == 0
        assert flaky.call_count == 4  # three, then the one failed item again
    assert main(["status", "run", "--json"]) == 0
    snapshot = json.loads(capsys.readouterr().out)
    statuses = [item["status"] for job in snapshot["jobs"] for item in job["items"]]
    assert statuses == ["succeeded"] * 3


def test_retry_sends_to_the_server_its_run_config_named(
    pipelines: str, engine: SimulatedEngine, local_server: LocalServer, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c"])
    (tmp_path / "run.yaml").write_text(
        f"expression: {pipelines}:Blocked\nitems: in.jsonl\nrun_dir: run\nretries: 1\n"
        f"engine:\n  url: {local_server.url}\n  kind: vllm\n  timeout: 5\n",
        encoding="utf-8",
    )
    (tmp_path / "blocked").touch()
    assert main(["run", "--config", "run.yaml", "--progress", "off"]) == 1
    assert local_server.stats()["ok"] == 0
    (tmp_path / "blocked").unlink()
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert local_server.stats()["ok"] == 3
    assert engine.call_count == 0


def test_retry_options_change_this_retry_only(
    pipelines: str,
    engine: SimulatedEngine,
    local_server: LocalServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", ["a", "b", "c", "d"])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--retries", "1"]
    local_server.configure(error_rate=1.0)  # the server the run had fails everything
    assert main([*run, "--engine-url", local_server.url, "--progress", "off"]) == 1
    kept = (tmp_path / "run" / "command.json").read_bytes()
    with LocalServer() as moved:  # the same model served elsewhere
        retry = ["retry", "run", "--progress", "off", "--engine-url", moved.url]
        assert main([*retry, "--engine-timeout", "5"]) == 0
        assert moved.stats()["ok"] == 4
    assert (tmp_path / "run" / "command.json").read_bytes() == kept  # for this retry only
    assert engine.call_count == 0
    capsys.readouterr()
    other = ["run", f"{pipelines}:Blocked", str(data), "--run-dir", "plain", "--retries", "1"]
    (tmp_path / "blocked").touch()
    assert main([*other, "--workers", "4", "--progress", "off"]) == 1
    assert main(["retry", "plain", "--engine-timeout", "5"]) == 2  # symai's engine: no url
    assert "--engine-timeout is for a server at --engine-url" in capsys.readouterr().err
    (tmp_path / "blocked").unlink()
    from symbatcher.testing import use_engine

    with use_engine(SimulatedEngine(latency=0.02)) as slow:
        assert main(["retry", "plain", "--workers", "1", "--progress", "off"]) == 0
        assert slow.call_count == 4 and slow.max_concurrency == 1  # the run had 4 workers


def test_retry_runs_the_failed_items_and_those_an_interruption_left_running(
    pipelines: str, engine: SimulatedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    data = write_jsonl(tmp_path / "in.jsonl", [f"item-{i}" for i in range(8)])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "run", "--progress", "off"]
    assert main(run) == 0
    with sqlite3.connect(tmp_path / "run" / "state.sqlite") as conn:  # as a Ctrl-C leaves it
        conn.execute("UPDATE items SET status = 'running', result = NULL WHERE idx IN (2, 5)")
    conn.close()
    engine.reset()
    assert main(["retry", "run", "--progress", "off"]) == 0
    assert sorted(c.split("item-")[1][0] for c in engine.calls) == ["2", "5"]
    assert main(["status", "run"]) == 0
    assert "8 items: 8 succeeded, 0 failed, 0 pending" in capsys.readouterr().out
    assert main(["retry", "run"]) == 0
    assert "no failed or interrupted items" in capsys.readouterr().err


FLAKY = """
import os

from symai import Expression, Symbol


class Flaky(Expression):
    def forward(self, input, **kwargs):
        if os.path.exists(os.environ["BLOCK_FILE"]):
            raise RuntimeError("blocked")
        return Symbol(str(input)).query("Summarize")
"""


def test_retry_from_another_directory_imports_the_expression_where_run_did(
    local_server: LocalServer, tmp_path: Path
) -> None:
    import subprocess

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "flaky_pipelines.py").write_text(FLAKY, encoding="utf-8")
    write_jsonl(project / "in.jsonl", ["a", "b", "c"])
    block = tmp_path / "block"
    block.touch()
    env = {**os.environ, "BLOCK_FILE": str(block), "HOME": str(tmp_path)}

    def command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        line = [sys.executable, "-m", "symbatcher", *args, "--progress", "off"]
        return subprocess.run(line, cwd=cwd, env=env, capture_output=True, text=True)

    url = ["--engine-url", local_server.url]
    ran = command(project, "run", "flaky_pipelines:Flaky", "in.jsonl", "--run-dir", "run", *url)
    assert ran.returncode == 1 and "3 failed with RuntimeError: blocked" in ran.stderr
    block.unlink()
    retried = command(elsewhere, "retry", str(project / "run"))
    assert retried.returncode == 0, retried.stderr  # it said: cannot import 'flaky_pipelines'
    assert "3 items: 3 succeeded, 0 failed" in retried.stderr
    assert local_server.stats()["ok"] == 3
