"""Crash and resume: a run killed with SIGKILL part-way loses nothing and pays nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = 400
WORKERS = 32  # max_parallel_jobs x workers_per_job in crash_child


def _child(run_dir: Path, log: Path, *mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(run_dir), str(log), str(N), *mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _succeeded(run_dir: Path) -> set[int]:
    conn = sqlite3.connect(run_dir / "state.sqlite")
    try:
        rows = conn.execute("SELECT idx FROM items WHERE status = 'succeeded'").fetchall()
    finally:
        conn.close()
    return {idx for (idx,) in rows}


def _calls(log: Path) -> dict[str, Counter[int]]:
    by_pid: dict[str, Counter[int]] = {}
    for line in log.read_text().splitlines():
        pid, item = line.split()
        by_pid.setdefault(pid, Counter())[int(item.removeprefix("item"))] += 1
    return by_pid


def _check_resume(run_dir: Path, log: Path, killed: subprocess.Popen[str]) -> None:
    assert killed.returncode == -signal.SIGKILL
    done_at_kill = _succeeded(run_dir)
    assert len(done_at_kill) < N  # the kill really came part-way
    first_calls = _calls(log) if log.exists() else {}
    assert len(first_calls) <= 1
    first_pid = next(iter(first_calls), None)
    resumed = _child(run_dir, log)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0 and f"finished completed {N}" in out
    rows = [
        json.loads(line) for line in (run_dir / "out" / "results.jsonl").read_text().splitlines()
    ]
    assert [row["index"] for row in rows] == list(range(N))  # each exactly once, in order
    assert all(
        row["status"] == "succeeded" and f"item{row['index']}\n" in row["output"] for row in rows
    )
    calls = _calls(log)
    second = next(counter for pid, counter in calls.items() if pid != first_pid)
    first = calls.get(first_pid or "", Counter())
    # what was durable at the kill is not paid again; everything else is run exactly once
    assert set(second) == set(range(N)) - done_at_kill
    assert max(second.values()) == 1
    assert all(first[i] == 1 for i in done_at_kill)
    # beyond its durable items, the first process paid only for what was in flight when it
    # died: an item running in each worker, and at most one per worker awaiting its commit
    in_flight = 2 * WORKERS
    assert sum(first.values()) - len(done_at_kill) <= in_flight
    assert sum(first.values()) + sum(second.values()) <= N + in_flight
    # each model's figures commit with the items' own: the same tokens, crash or not
    conn = sqlite3.connect(run_dir / "state.sqlite")
    try:
        items = conn.execute("SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM items")
        models = conn.execute("SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM models")
        assert items.fetchone() == models.fetchone()
        assert conn.execute("SELECT SUM(calls) FROM models").fetchone()[0] >= N
    finally:
        conn.close()


def test_sigterm_stops_a_cli_run_with_every_paid_call_recorded(tmp_path: Path) -> None:
    """A container being stopped sends SIGTERM: the run stops like on a Ctrl-C, its calls in
    flight finish and their items are recorded (by default the process would die on the
    spot, those answers paid for and lost), and it exits 143."""
    run_dir, log = tmp_path / "run", tmp_path / "calls.log"
    child = _child(run_dir, log, "cli")
    for _ in range(600):  # polled: the call log is all there is to watch
        if log.exists() and len(log.read_text().splitlines()) >= 20:
            break
        threading.Event().wait(0.05)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=60)
    assert child.returncode == 143
    paid = set().union(*(set(counter) for counter in _calls(log).values()))
    assert 20 <= len(paid) < N  # stopped part-way
    assert _succeeded(run_dir) == paid  # every call paid for has its item recorded


# the 1st and 3rd commits of all (the run's set-up, the first items), and the commit that
# makes half the items durable: a fixed late commit number could come after the last item
# when the writer groups many items per commit (seen once: all 400 in by the 17th)
@pytest.mark.parametrize(("mode", "at"), [("commit", 1), ("commit", 3), ("items", N // 2)])
def test_killed_mid_commit_then_resumed(tmp_path: Path, mode: str, at: int) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "calls.log"
    child = _child(run_dir, log, mode, str(at))
    child.communicate(timeout=240)
    _check_resume(run_dir, log, child)


@pytest.mark.parametrize("after", [1, 90, 200])
def test_killed_from_outside_then_resumed(tmp_path: Path, after: int) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "calls.log"
    child = _child(run_dir, log, "external")
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("done ") and int(line.split()[1]) >= after:
            child.send_signal(signal.SIGKILL)
            break
    child.communicate(timeout=240)
    _check_resume(run_dir, log, child)
