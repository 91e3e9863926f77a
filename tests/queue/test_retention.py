"""Ended jobs removed after their term: queue rows, items and run directories; a real SQLite
file and real run directories."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from symbatcher.queue import JobQueue, Retention
from symbatcher.queue.jobs import JobNotFoundError
from symbatcher.queue.retention import MAX_EVERY, MIN_EVERY

DAY = 86400.0


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = JobQueue(tmp_path / "jobs.sqlite")
    yield q
    q.close()


def _ended(queue: JobQueue, root: Path, state: str, at: float, items: int = 3) -> str:
    job = queue.submit("x", items=range(items), now=at - 10)
    claimed = queue.claim("w", now=at - 5)
    assert claimed is not None and claimed.id == job.id
    (root / job.id).mkdir(parents=True)
    (root / job.id / "state.sqlite").write_bytes(b"results")
    assert queue.finish(job.id, "w", state, now=at)  # type: ignore[arg-type]
    return job.id


def test_a_sweep_removes_only_jobs_that_ended_before_their_term(
    queue: JobQueue, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    now = 100 * DAY
    old = [
        _ended(queue, root, state, now - 8 * DAY + i)
        for i, state in enumerate(("succeeded", "failed"))
    ]
    old.append(_ended(queue, root, "cancelled", now - 7 * DAY - 1, items=2500))  # 3 chunks
    recent = _ended(queue, root, "succeeded", now - 6 * DAY)
    retried = _ended(queue, root, "failed", now - 9 * DAY)
    queue.retry(retried)  # queued again: no longer ended, whatever its age
    waiting = queue.submit("x", items=[1], now=now - 30 * DAY)
    never_ran = queue.submit("x", items=[1], now=now - 30 * DAY)
    queue.cancel(never_ran.id, now=now - 20 * DAY)  # ended with no run directory

    removed = Retention(queue, root, keep=7 * DAY).sweep(now=now)

    assert removed == [never_ran.id, *old]  # oldest first
    for job_id in removed:
        with pytest.raises(JobNotFoundError):
            queue.get(job_id)
        assert not (root / job_id).exists()
        assert list(queue.items(job_id)) == []
    for job_id in (recent, retried, waiting.id):
        assert queue.get(job_id).state in ("succeeded", "queued")
        assert list(queue.items(job_id))
    assert (root / recent).is_dir() and (root / retried).is_dir()
    assert Retention(queue, root, keep=7 * DAY).sweep(now=now) == []


def test_a_sweep_takes_the_jobs_a_hundred_at_a_time(queue: JobQueue, tmp_path: Path) -> None:
    ids = [_ended(queue, tmp_path, "succeeded", at=float(i), items=1) for i in range(1, 251)]
    assert [job.id for job in queue.expire(10.0, now=1000.0)] == ids[:100]  # one short write
    assert Retention(queue, tmp_path, keep=10.0).sweep(now=1000.0) == ids[100:]
    assert queue.counts()["succeeded"] == 0


def test_a_run_directory_that_cannot_be_removed_is_named_and_the_rest_go_on(
    queue: JobQueue, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _ended(queue, tmp_path, "succeeded", at=1.0)
    second = _ended(queue, tmp_path, "succeeded", at=2.0)
    (tmp_path / first / "state.sqlite").unlink()
    (tmp_path / first).rmdir()
    (tmp_path / first).write_text("a file where the directory was")  # rmtree refuses it
    assert Retention(queue, tmp_path, keep=1.0).sweep(now=10.0) == [first, second]
    assert f"cannot remove {tmp_path / first}" in caplog.text
    assert not (tmp_path / second).exists()


def test_it_sweeps_when_it_starts_and_leaves_no_thread(queue: JobQueue, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    job = _ended(queue, tmp_path, "succeeded", at=1.0)
    retention = Retention(queue, tmp_path, keep=1.0, every=MAX_EVERY)
    with retention:  # the first sweep runs before the thread first waits
        pass
    with pytest.raises(JobNotFoundError):
        queue.get(job)
    assert set(threading.enumerate()) == before


def test_a_sweep_that_removed_jobs_says_so_in_the_units_of_the_term(
    queue: JobQueue, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    _ended(queue, tmp_path, "succeeded", at=1.0)
    with caplog.at_level(logging.INFO, logger="symbatcher"):
        Retention(queue, tmp_path, keep=30 * DAY).sweep(now=40 * DAY)
        Retention(queue, tmp_path, keep=30 * DAY).sweep(now=40 * DAY)  # nothing: no line
    assert [r.getMessage() for r in caplog.records] == [
        "symbatcher: removed 1 job(s) ended over 30 days ago"
    ]


def test_the_time_between_sweeps_is_a_tenth_of_the_term_within_bounds(
    queue: JobQueue, tmp_path: Path
) -> None:
    assert Retention(queue, tmp_path, keep=600.0).every == 60.0
    assert Retention(queue, tmp_path, keep=0.5).every == MIN_EVERY
    assert Retention(queue, tmp_path, keep=7 * DAY).every == MAX_EVERY
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="keep must be a number of seconds > 0"):
            Retention(queue, tmp_path, keep=bad)
