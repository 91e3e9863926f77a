"""The job queue: order, atomic claims, leases, heartbeats, cancellation; a real SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from symbatcher.queue import JobQueue
from symbatcher.queue.jobs import JobNotFoundError


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    q = JobQueue(tmp_path / "queue" / "jobs.sqlite")
    yield q  # type: ignore[misc]
    q.close()


def test_claims_go_by_priority_then_age(queue: JobQueue) -> None:
    low = queue.submit("summarize", {"items": [1]}, now=1.0)
    high = queue.submit("summarize", priority=5, now=2.0)
    older_low = queue.submit("summarize", now=0.5)
    order = [queue.claim("w", now=10.0) for _ in range(3)]
    assert [j.id for j in order if j] == [high.id, older_low.id, low.id]
    assert queue.claim("w", now=10.0) is None
    assert order[2] is not None and order[2].settings == {"items": [1]}
    assert order[0] is not None and order[0].state == "running" and order[0].started_at == 10.0


def test_each_job_is_claimed_once_by_competing_workers(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    setup = JobQueue(path)
    ids = {setup.submit("x").id for _ in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        own = JobQueue(path)  # its own connection, as another process would have
        try:
            while (job := own.claim(name, lease=60)) is not None:
                with lock:
                    claimed.append(job.id)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    setup.close()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice


def test_a_lapsed_lease_lets_another_worker_take_the_job(queue: JobQueue) -> None:
    job = queue.submit("x", now=0.0)
    assert queue.claim("dead", lease=5, now=1.0) is not None
    assert queue.claim("alive", lease=5, now=3.0) is None  # lease still good
    assert queue.heartbeat(job.id, "dead", lease=5, now=4.0) is not None  # renewed to 9
    assert queue.claim("alive", lease=5, now=8.0) is None
    taken = queue.claim("alive", lease=5, now=10.0)
    assert taken is not None and taken.worker == "alive" and taken.claims == 2
    assert taken.started_at == 1.0  # first start kept
    assert queue.heartbeat(job.id, "dead", now=10.5) is None  # not the dead one's any more
    assert not queue.finish(job.id, "dead", "succeeded", now=11.0)
    assert queue.finish(job.id, "alive", "succeeded", progress={"done": 3}, now=12.0)
    done = queue.get(job.id)
    assert done.state == "succeeded" and done.finished_at == 12.0
    assert done.progress == {"done": 3}


def test_a_released_job_is_queued_again_for_any_worker(queue: JobQueue) -> None:
    job = queue.submit("x", now=0.0)
    assert queue.claim("stopping", lease=30, now=1.0) is not None
    assert not queue.release(job.id, "someone else")  # only its worker gives it back
    assert queue.release(job.id, "stopping", progress={"done": 2})
    back = queue.get(job.id)
    assert (back.state, back.worker, back.lease_until) == ("queued", None, None)
    assert back.progress == {"done": 2}
    again = queue.claim("next", lease=30, now=2.0)  # at once, no lease to wait out
    assert again is not None and again.id == job.id and again.claims == 2
    assert again.started_at == 1.0


def test_cancel_queued_and_running_jobs(queue: JobQueue) -> None:
    waiting = queue.submit("x", now=0.0)
    running = queue.submit("x", now=1.0)
    queue.claim("w", now=2.0)  # takes `waiting` (older)
    assert queue.cancel(running.id).state == "cancelled"  # queued: ends at once
    asked = queue.cancel(waiting.id)
    assert asked.state == "running" and asked.cancel_requested
    beat = queue.heartbeat(waiting.id, "w", now=3.0)
    assert beat is not None and beat.cancel_requested  # the worker learns it here
    assert queue.finish(waiting.id, "w", "cancelled", now=4.0)
    assert queue.counts()["cancelled"] == 2
    assert queue.cancel(waiting.id).state == "cancelled"  # ended jobs stay as they are


def test_listing_and_errors(queue: JobQueue) -> None:
    for i in range(5):
        queue.submit("x", now=float(i))
    queue.claim("w", now=10.0)
    assert len(queue.list()) == 5
    assert len(queue.list(state="queued")) == 4
    assert [j.created_at for j in queue.list(limit=2, offset=1)] == [1.0, 2.0]
    with pytest.raises(JobNotFoundError, match="no job"):
        queue.get("nope")
    with pytest.raises(ValueError, match="timeout"):
        queue.submit("x", timeout=0)
    with pytest.raises(ValueError, match="ends as"):
        queue.finish("x", "w", "running")


def test_the_queue_survives_reopening(tmp_path: Path) -> None:
    first = JobQueue(tmp_path / "jobs.sqlite")
    job = first.submit("x", {"a": 1}, timeout=30)
    first.close()
    again = JobQueue(tmp_path / "jobs.sqlite")
    assert again.get(job.id).settings == {"a": 1} and again.get(job.id).timeout == 30
    again.close()
