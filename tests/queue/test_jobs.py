"""The job queue: order, atomic claims, leases, heartbeats, cancellation; a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
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
    assert order[2] is not None and order[2].settings == {} and order[2].total == 1
    assert list(queue.items(low.id)) == [1]
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


def test_a_worker_with_no_engine_claims_only_jobs_that_name_their_model(queue: JobQueue) -> None:
    """``models_only``: a process with no engine of its own leaves the jobs that name no
    model to one that has, also a lapsed one; the order among the rest is kept."""
    plain = queue.submit("x", priority=9, now=0.0)
    named_null = queue.submit("x", {"model": None}, priority=9, now=0.5)
    first = queue.submit("x", {"model": "deepseek:deepseek-v4-flash"}, now=1.0)
    second = queue.submit("x", {"model": "openai:gpt-5.4-mini"}, now=2.0)
    taken = [queue.claim("no-engine", lease=5, now=10.0, models_only=True) for _ in range(3)]
    assert [job.id if job else None for job in taken] == [first.id, second.id, None]
    lapsed = queue.claim("engine", lease=5, now=10.0)
    assert lapsed is not None and lapsed.id == plain.id  # the highest priority, for an engine
    for job in (first, second):
        assert queue.finish(job.id, "no-engine", "succeeded", now=11.0)
    assert queue.claim("no-engine", lease=5, now=20.0, models_only=True) is None  # lapsed too
    rest = queue.claim("engine", lease=5, now=20.0)
    assert rest is not None and rest.id == plain.id and rest.claims == 2
    other = queue.claim("engine", lease=5, now=20.0)
    assert other is not None and other.id == named_null.id


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
    assert list(queue.counts()) == [
        "submitting", "queued", "running", "succeeded", "failed", "cancelled"
    ]  # fmt: skip
    assert queue.cancel(waiting.id).state == "cancelled"  # ended jobs stay as they are


def test_listing_and_errors(queue: JobQueue) -> None:
    for i in range(5):
        queue.submit("x", now=float(i))
    queue.claim("w", now=10.0)
    assert len(queue.list()) == 5
    assert len(queue.list(state="queued")) == 4
    assert [j.created_at for j in queue.list(limit=2, offset=1)] == [3.0, 2.0]  # newest first
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


def test_a_job_s_items_are_kept_apart_and_read_a_chunk_at_a_time(
    queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from symbatcher.queue import jobs

    monkeypatch.setattr(jobs, "CHUNK", 7)
    job = queue.submit("x", {"workers": 2}, items=(f"item-{i}" for i in range(50)))
    assert job.total == 50 and job.settings == {"workers": 2}
    assert list(queue.items(job.id)) == [f"item-{i}" for i in range(50)]
    assert list(queue.items(job.id, start=20)) == [f"item-{i}" for i in range(20, 50)]
    assert list(queue.items(job.id, start=49)) == ["item-49"]
    assert list(queue.items(job.id, start=50)) == []
    # looking at the job reads none of them: its row holds its settings only
    with closing(sqlite3.connect(queue.path)) as db:
        (length,) = db.execute("SELECT length(settings) FROM jobs").fetchone()
        chunks = db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ?", (job.id,))
        assert length < 50 and chunks.fetchone()[0] == 8


def test_items_that_fail_while_read_leave_no_job(queue: JobQueue) -> None:
    def records() -> Iterator[int]:
        yield from range(2500)
        raise ValueError("line 2501 is bad")

    with pytest.raises(ValueError, match="2501"):
        queue.submit("x", items=records())
    with pytest.raises(TypeError, match="str"):
        queue.submit("x", items="abc")
    with pytest.raises(ValueError, match="once"):
        queue.submit("x", {"items": [1]}, items=[2])
    assert queue.list() == []
    with closing(sqlite3.connect(queue.path)) as db:
        assert db.execute("SELECT COUNT(*) FROM job_items").fetchone()[0] == 0
    without = queue.submit("x")
    assert without.total is None and list(queue.items(without.id)) == []


def test_a_queue_made_before_items_were_kept_apart_is_moved_over_once(tmp_path: Path) -> None:
    """0.7.1 kept a job's items in its settings, read whole by every look at the job."""
    path = tmp_path / "jobs.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, expression TEXT NOT NULL, "
            "settings TEXT NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, "
            "timeout REAL, created_at REAL NOT NULL, started_at REAL, finished_at REAL, "
            "worker TEXT, lease_until REAL, claims INTEGER NOT NULL DEFAULT 0, "
            "cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, progress TEXT);"
        )
        old = {"items": [f"old-{i}" for i in range(1500)], "workers": 3}
        db.execute(
            "INSERT INTO jobs (id, expression, settings, state, created_at) "
            "VALUES ('a', 'x', ?, 'queued', 1.0), ('b', 'x', '{}', 'queued', 2.0)",
            (json.dumps(old),),
        )
    for _ in range(2):  # the second open finds it done
        queue = JobQueue(path)
        a, b = queue.get("a"), queue.get("b")
        assert a.settings == {"workers": 3} and a.total == 1500
        assert list(queue.items("a")) == old["items"]
        assert b.total is None and b.settings == {}
        assert queue.claim("w", now=10.0) == queue.get("a")
        queue.release("a", "w")
        queue.close()


def test_jobs_are_listed_newest_first_a_page_at_a_time(queue: JobQueue) -> None:
    ids = [queue.submit("x", now=float(n)).id for n in range(7)]
    queue.claim("w", now=100.0)  # the oldest: running, the rest queued
    assert [j.id for j in queue.list(limit=3)] == ids[::-1][:3]
    assert [j.id for j in queue.list(limit=3, offset=3)] == ids[::-1][3:6]
    assert [j.id for j in queue.list("queued")] == ids[1:][::-1]
    assert [j.id for j in queue.list("running")] == [ids[0]]


def test_only_a_failed_or_cancelled_job_is_queued_again(queue: JobQueue) -> None:
    from symbatcher.queue import JobStateError

    failed, done, waiting = (queue.submit("x", {"workers": 2}, now=n) for n in (1.0, 2.0, 3.0))
    for job in (failed, done):
        claimed = queue.claim("w", now=10.0)
        assert claimed is not None and claimed.id == job.id
    queue.finish(failed.id, "w", "failed", error="2 item(s) failed")
    queue.finish(done.id, "w", "succeeded")
    again = queue.retry(failed.id)
    assert (again.state, again.error, again.worker) == ("queued", None, None)
    assert again.settings == {"workers": 2, "retry_failed": True}
    assert queue.claim("w", now=20.0) == queue.get(failed.id)  # claimed like any queued job
    for job_id, state in ((failed.id, "running"), (done.id, "succeeded"), (waiting.id, "queued")):
        with pytest.raises(JobStateError, match=f"is {state}: only a failed or cancelled"):
            queue.retry(job_id)
    queue.cancel(waiting.id)
    assert queue.retry(waiting.id).state == "queued"
    with pytest.raises(JobNotFoundError):
        queue.retry("nope")


def test_only_an_ended_job_is_deleted_and_its_items_with_it(queue: JobQueue) -> None:
    from symbatcher.queue import JobStateError

    ended, waiting = queue.submit("x", items=range(2500)), queue.submit("x", items=[1])
    queue.cancel(ended.id)
    with pytest.raises(JobStateError, match="is queued: cancel it first"):
        queue.delete(waiting.id)
    assert queue.delete(ended.id).id == ended.id
    with pytest.raises(JobNotFoundError):
        queue.get(ended.id)
    assert list(queue.items(ended.id)) == [] and list(queue.items(waiting.id)) == [1]
    with closing(sqlite3.connect(queue.path)) as db:
        assert db.execute("SELECT COUNT(*) FROM job_items").fetchone()[0] == 1
    with pytest.raises(JobNotFoundError):
        queue.delete(ended.id)


def test_a_large_submission_holds_up_no_other_user_of_the_queue(tmp_path: Path) -> None:
    """Items are written a chunk per short transaction: while a file is still being read,
    another process claims, heartbeats and looks; the job is ``submitting``, unclaimed."""
    path = tmp_path / "jobs.sqlite"
    queue, other = JobQueue(path), JobQueue(path)
    other._db.execute("PRAGMA busy_timeout = 200")  # a held write lock fails it at once
    running = other.submit("x", items=[1])
    assert other.claim("w") is not None
    seen: list[str] = []

    def records() -> Iterator[int]:
        for n in range(5000):
            if n == 2500:  # two chunks in, the rest still to read
                (submitting,) = [j for j in other.list() if j.state == "submitting"]
                seen.append(submitting.state)
                assert other.claim("w2") is None  # nothing claimable: it is not queued yet
                assert other.heartbeat(running.id, "w") is not None
                assert other.counts()["submitting"] == 1
            yield n

    job = queue.submit("x", items=records())
    assert seen == ["submitting"]
    assert job.state == "queued" and job.total == 5000
    assert list(queue.items(job.id, start=4998)) == [4998, 4999]
    assert other.claim("w2") == other.get(job.id)
    queue.close()
    other.close()


def test_a_submission_whose_submitter_died_is_removed_by_the_next_claim(queue: JobQueue) -> None:
    from symbatcher.queue import jobs

    with closing(sqlite3.connect(queue.path)) as db, db:
        db.execute(
            "INSERT INTO jobs (id, expression, settings, state, created_at, lease_until) "
            "VALUES ('dead', 'x', '{}', 'submitting', 1.0, ?), "
            "('busy', 'x', '{}', 'submitting', 1.0, ?)",
            (time.time() - 1, time.time() + jobs.SUBMIT_LEASE),
        )
        db.execute("INSERT INTO job_items VALUES ('dead', 0, '[1]'), ('busy', 0, '[2]')")
    assert queue.claim("w") is None
    with pytest.raises(JobNotFoundError):
        queue.get("dead")
    assert queue.get("busy").state == "submitting"  # its submitter is still writing
    assert list(queue.items("dead")) == [] and list(queue.items("busy")) == [2]


def test_a_submission_too_slow_for_its_lease_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from symbatcher.queue import JobStateError, jobs

    path = tmp_path / "jobs.sqlite"
    queue, other = JobQueue(path), JobQueue(path)
    monkeypatch.setattr(jobs, "SUBMIT_LEASE", -1.0)  # lapsed as soon as it is written

    def records() -> Iterator[int]:
        for n in range(2500):
            if n == 1500:
                assert other.claim("w") is None  # takes the submission for abandoned
            yield n

    with pytest.raises(JobStateError, match="lapsed"):
        queue.submit("x", items=records())
    assert queue.list() == []
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM job_items").fetchone()[0] == 0
    queue.close()
    other.close()
