"""The ``symbatcher`` command as a whole: usage errors, exit codes, a closed pipe, --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symbatcher.cli import main
from tests.cli.support import run_cli


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
