"""``symbatcher demo``, run as a user runs it: a subprocess."""

from __future__ import annotations

from symbatcher.testing.server import LocalServer
from tests.cli.support import run_cli


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


def test_demo_against_a_server_at_engine_url(local_server: LocalServer) -> None:
    done = run_cli("demo", "--items", "20", "--workers", "8", "--engine-url", local_server.url)
    assert done.returncode == 0, done.stderr
    assert f"engine: symai's vllm engine at {local_server.url}" in done.stderr
    assert "done: 20 items (20 ok, 0 failed)" in done.stdout
    assert "[0] echo:" in done.stdout  # the server echoes the prompt
    assert local_server.stats()["ok"] == 40  # two calls per review
