"""The ``symbatcher`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symbatcher.cli import main
from symbatcher.testing.server import LocalServer


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symbatcher", *args],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_demo_runs_on_the_simulator_with_a_summary() -> None:
    done = run_cli(
        "demo", "--items", "120", "--workers", "16", "--batch-size", "8", "--latency", "0.01"
    )
    assert done.returncode == 0, done.stderr
    assert "done: 120 items (120 ok, 0 failed)" in done.stdout
    assert "items/s" in done.stdout and "batches, mean batch fill" in done.stdout
    assert "engine: simulated" in done.stderr and "--engine symai" in done.stderr
    assert "[0] sim(Data:" in done.stdout and "Summarize this customer review" in done.stdout


def test_demo_batches_fill_when_the_engine_takes_one_at_a_time() -> None:
    done = run_cli(
        "demo", "--items", "64", "--workers", "16", "--batch-size", "8", "--latency", "0.01",
        "--max-inflight-batches", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    batches = int(done.stdout.split(" engine calls in ")[1].split(" batches")[0])
    assert batches <= 20  # 128 calls, 8 a batch: about 16


def test_demo_engine_declares_what_it_serves_and_the_run_keeps_to_it() -> None:
    """The simulator serves --capacity batches at once and says so; no cap is given, the
    run takes the engine's, and batches fill as under --max-inflight-batches."""
    done = run_cli(
        "demo", "--items", "64", "--workers", "16", "--batch-size", "8", "--latency", "0.01",
        "--capacity", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 batches at once" in done.stderr
    assert done.stdout.rstrip().endswith("at most 1 at once")
    batches = int(done.stdout.split(" engine calls in ")[1].split(" batches")[0])
    assert batches <= 20  # 128 calls, 8 a batch: about 16
    unlimited = run_cli("demo", "--items", "8", "--latency", "0", "--capacity", "0")
    assert unlimited.returncode == 0, unlimited.stderr
    assert "at once" not in unlimited.stdout + unlimited.stderr


def test_demo_with_a_progress_line() -> None:
    done = run_cli(
        "demo", "--items", "30", "--latency", "0", "--progress", "on", "--engine", "simulated-plain"
    )
    assert done.returncode == 0, done.stderr
    assert "30/30" in done.stderr
    # a plain engine's calls are not batched, and the summary does not pretend they were
    assert done.stdout.rstrip().endswith("60 engine calls, each on its own (a plain engine)")


def test_bad_arguments_exit_with_a_message() -> None:
    done = run_cli("demo", "--workers", "0")
    assert done.returncode == 2 and "must be a positive integer" in done.stderr
    done = run_cli("demo", "--capacity", "-1")
    assert done.returncode == 2 and "--capacity: must be an integer >= 0, got -1" in done.stderr
    done = run_cli("demo", "--linger", "-1")
    assert done.returncode == 2 and "--linger: must be >= 0 seconds, got -1" in done.stderr


def test_main_returns_an_exit_code(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--items", "5", "--latency", "0", "--show", "0"]) == 0
    assert "done: 5 items" in capsys.readouterr().out


def test_demo_against_a_server_at_engine_url(local_server: LocalServer) -> None:
    done = run_cli("demo", "--items", "20", "--workers", "8", "--engine-url", local_server.url)
    assert done.returncode == 0, done.stderr
    assert f"engine: symai's vllm engine at {local_server.url}" in done.stderr
    assert "done: 20 items (20 ok, 0 failed)" in done.stdout
    assert "[0] echo:" in done.stdout  # the server echoes the prompt
    assert local_server.stats()["ok"] == 40  # two calls per review


def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """``symbatcher status --json | head``: the reader closes the pipe mid-output."""
    from tests.store.synthetic import big_run

    run = big_run(tmp_path / "run", 20_000)
    process = subprocess.Popen(
        [sys.executable, "-m", "symbatcher", "status", str(run), "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"{")
    process.stdout.close()  # far more than a pipe's buffer is still to come
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_version_names_symbatcher_and_the_symai_it_runs_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from importlib.metadata import version

    import symbatcher

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"symbatcher {symbatcher.__version__} (symbolicai ")
    assert version("symbolicai") in out
