"""Workers run queued jobs durably: results kept per job, cancellation, unknown names."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from symai import Expression, Symbol

from symbatcher.dispatch import Dispatcher
from symbatcher.queue import ExpressionRegistry, JobQueue
from symbatcher.queue.jobs import JobStateError
from symbatcher.queue.worker import JobWorker, WorkerPool
from symbatcher.store.base import SUCCEEDED
from symbatcher.store.sqlite import SQLiteStore
from symbatcher.testing import SimulatedEngine
from symbatcher.testing.hosted import hosted_engines_at
from symbatcher.testing.server import LocalServer

names = ExpressionRegistry()


@names.register("echo")
class Echo(Expression):  # type: ignore[misc]
    def forward(self, input: Any, **kwargs: Any) -> Any:
        return Symbol(str(input)).query("Summarize")


@names.register("gated")
class Gated(Expression):  # type: ignore[misc]
    """Item "gate" waits until the test lets it go, so a cancel lands mid-run."""

    started: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()

    def forward(self, input: Any, **kwargs: Any) -> Any:
        if input == "gate":
            Gated.started.set()
            Gated.release.wait(30)
        return Symbol(str(input)).query("Summarize")


@names.register("flaky")
class Flaky(Expression):  # type: ignore[misc]
    """Items ending in an odd digit fail while the test says so."""

    failing: ClassVar[bool] = True

    def forward(self, input: Any, **kwargs: Any) -> Any:
        if Flaky.failing and int(str(input)[-1]) % 2:
            raise ValueError(f"{input} failed")
        return Symbol(str(input)).query("Summarize")


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = JobQueue(tmp_path / "jobs.sqlite")
    yield q
    q.close()


def succeeded_items(run_dir: Path) -> list[int]:
    return sorted(r.index for r in SQLiteStore(run_dir).items((SUCCEEDED,)))


def test_a_worker_runs_a_job_and_keeps_its_items(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    job = queue.submit("echo", {"items": [f"item-{i}" for i in range(10)], "workers": 4})
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5)
    ended = worker.run_one()
    assert ended is not None and ended.id == job.id
    assert ended.state == "succeeded" and ended.error is None
    assert ended.progress is not None and ended.progress["succeeded"] == 10
    assert succeeded_items(tmp_path / "runs" / job.id) == list(range(10))
    assert engine.call_count == 10
    assert worker.run_one() is None  # nothing left


def test_a_worker_streams_a_job_s_items_chunk_by_chunk(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from symbatcher.queue import jobs

    monkeypatch.setattr(jobs, "CHUNK", 7)
    job = queue.submit("echo", {"workers": 5}, items=(f"item-{i}" for i in range(40)))
    ended = JobWorker(queue, tmp_path / "runs", registry=names, lease=5).run_one()
    assert ended is not None and ended.state == "succeeded"
    records = list(SQLiteStore(tmp_path / "runs" / job.id).items())
    assert [r.index for r in records] == list(range(40))
    assert [json.loads(str(r.input)) for r in records] == [f"item-{i}" for i in range(40)]
    assert all(f"\\nitem-{r.index}\\n" in str(r.result) for r in records)  # its own answer
    assert engine.call_count == 40
    without = queue.submit("echo")
    ended = JobWorker(queue, tmp_path / "runs", registry=names, lease=5).run_one()
    assert ended is not None and ended.id == without.id and ended.state == "failed"
    assert ended.error == "the job was submitted without items"


def test_a_job_whose_models_key_is_gone_when_it_starts_fails_saying_so(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service checks the key when a job is submitted; it may be gone by the time the
    job runs (a restart with another environment): the job fails naming it, no call made."""
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    job = queue.submit("echo", {"items": ["a", "b"], "model": "deepseek:deepseek-v4-flash"})
    ended = JobWorker(queue, tmp_path / "runs", registry=names, lease=5).run_one()
    assert ended is not None and ended.id == job.id and ended.state == "failed"
    assert ended.error is not None and ended.error.startswith("DEEPSEEK_API_KEY is not set")
    assert engine.call_count == 0


def test_a_job_that_names_no_model_fails_saying_so_where_the_service_has_no_engine(
    queue: JobQueue, tmp_path: Path
) -> None:
    """A worker of one's own (``models_only`` not set) in a process with no engine, given a
    job that names no model: it fails naming what it lacks, and nothing of it ran. The
    service's and ``symbatcher worker``'s workers, with no engine, leave such a job queued
    (below)."""
    job = queue.submit("echo", {"items": ["a", "b"]})
    ended = JobWorker(queue, tmp_path / "runs", registry=names, lease=5).run_one()
    assert ended is not None and ended.id == job.id and ended.state == "failed"
    assert ended.error is not None and ended.error.startswith(
        "the job names no model (settings.model) and the service has no engine of its own: "
        "no engine named 'neurosymbolic'"
    )
    assert ended.progress is None or not ended.progress.get("succeeded")


def test_a_worker_for_models_only_leaves_a_job_with_no_model_queued(
    queue: JobQueue, tmp_path: Path, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no engine of its own it takes the job that names its model and leaves the
    other, queued and untouched, to a process that has one."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    plain = queue.submit("echo", {"items": ["a"]}, priority=5)
    named = queue.submit("echo", {"items": ["b", "c"], "model": "deepseek:deepseek-v4-flash"})
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5, models_only=True)
    with hosted_engines_at(local_server.url):
        ended = worker.run_one()
        assert worker.run_one() is None
    assert ended is not None and ended.id == named.id and ended.state == "succeeded"
    left = queue.get(plain.id)
    assert (left.state, left.claims, left.error) == ("queued", 0, None)
    assert not (tmp_path / "runs" / plain.id).exists()


def test_the_workers_engine_timeout_holds_a_jobs_model_to_it(
    queue: JobQueue, tmp_path: Path, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's model gets the service's request timeout (``serve --engine-timeout``): a
    provider that stalls fails the call after it, where the default would wait 600 s."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    local_server.configure(latency=60.0)
    job = queue.submit("echo", {"items": ["a"], "model": "deepseek:deepseek-v4-flash"})
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5, engine_timeout=0.2)
    with hosted_engines_at(local_server.url):
        ended = worker.run_one()
    assert ended is not None and ended.id == job.id and ended.state == "failed"
    assert ended.progress is not None and ended.progress["failed"] == 1
    (record,) = SQLiteStore(tmp_path / "runs" / job.id).items()
    assert record.error_type == "EngineTransportError" and record.error_message == "timed out"
    assert local_server.stats()["ok"] == 0 and local_server.stats()["requests"] >= 1


def test_a_trial_runs_the_first_items_and_its_retry_the_rest_once_each(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    """``limit``: the first items alone, and what the rest would cost at their rate; a
    retry with no limit runs the others, none of the first again."""
    prices = {"simulated": (1.0, 2.0)}
    job = queue.submit(
        "echo", {"items": [f"item-{i}" for i in range(20)], "limit": 5, "prices": prices}
    )
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5)
    ended = worker.run_one()
    assert ended is not None and ended.state == "succeeded" and ended.error is None
    assert engine.call_count == 5
    store = SQLiteStore(tmp_path / "runs" / job.id)
    assert succeeded_items(tmp_path / "runs" / job.id) == list(range(5))
    totals = store.totals()
    assert ended.progress is not None
    trial = ended.progress["trial"]
    assert trial["limit"] == 5 and trial["items_left"] == 15
    assert trial["cost_per_item"] == pytest.approx(totals.cost / 5) and totals.cost > 0
    assert trial["cost_left"] == pytest.approx(totals.cost / 5 * 15)
    assert trial["tokens_left"] == round(totals.tokens_per_item * 15) > 0
    queue.retry(job.id, {"limit": None})
    again = worker.run_one()
    assert again is not None and again.state == "succeeded"
    assert engine.call_count == 20  # the 15 others, once each
    assert succeeded_items(tmp_path / "runs" / job.id) == list(range(20))
    assert all(r.attempts == 1 for r in SQLiteStore(tmp_path / "runs" / job.id).items())
    assert again.progress is not None and again.progress.get("trial") is None
    with pytest.raises(JobStateError, match="only a failed or cancelled job, or a trial"):
        queue.retry(queue.submit("echo", {"items": ["x"]}).id)


def test_a_job_can_cap_the_batches_out_at_once(
    queue: JobQueue, tmp_path: Path, dispatchers: list[Dispatcher]
) -> None:
    from symbatcher.testing import SimulatedBatchEngine, use_engine

    settings = {"items": [f"item-{i}" for i in range(24)], "workers": 8, "batch_size": 4}
    queue.submit("echo", {**settings, "max_inflight_batches": 1, "linger": 0.02})
    with use_engine(SimulatedBatchEngine(latency=0.02)) as gpu:
        ended = JobWorker(queue, tmp_path / "runs", registry=names, lease=5).run_one()
    assert ended is not None and ended.state == "succeeded"
    assert gpu.max_concurrency == 1 and sum(gpu.batches) == 24
    assert [d.linger for d in dispatchers] == [0.02]


def test_a_job_s_prices_and_the_worker_s_default_price_models_symai_does_not_know(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    from symbatcher.pricing import FREE
    from symbatcher.store.summary import summarize

    items = {"items": [f"item-{i}" for i in range(6)], "max_cost": 1.0}
    unpriced = queue.submit("echo", items)  # 'simulated' is in no symai table
    priced = queue.submit("echo", {**items, "prices": {"simulated": [1000, 2000]}})
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5)
    first, second = worker.run_one(), worker.run_one()
    assert first is not None and first.id == unpriced.id and first.state == "failed"
    # a budget it cannot keep: the first call halts the job, the rest stay pending
    assert "no price known for model 'simulated'" in (first.error or "")
    assert (first.error or "").endswith("; the items not done are pending")
    assert second is not None and second.id == priced.id and second.state == "succeeded"
    store = SQLiteStore(tmp_path / "runs" / priced.id)
    records = list(store.items())
    spent = sum(r.prompt_tokens * 1000 + r.completion_tokens * 2000 for r in records) / 1e6
    assert spent > 0 and summarize(store).cost == pytest.approx(spent)
    free = queue.submit("echo", items)  # a self-hosted server's worker: unpriced is free
    ended = JobWorker(queue, tmp_path / "runs", registry=names, default_price=FREE).run_one()
    assert ended is not None and ended.id == free.id and ended.state == "succeeded"
    assert summarize(SQLiteStore(tmp_path / "runs" / free.id)).cost == 0.0


def test_unknown_expressions_and_bad_settings_fail_the_job_only(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    unknown = queue.submit("os.system", {"items": ["x"]})
    no_items = queue.submit("echo", {})
    worker = JobWorker(queue, tmp_path, registry=names)
    first, second = worker.run_one(), worker.run_one()
    assert first is not None and first.id == unknown.id and first.state == "failed"
    assert "no expression registered as 'os.system'" in (first.error or "")
    assert second is not None and second.id == no_items.id and second.state == "failed"
    assert engine.call_count == 0


def test_cancel_stops_a_running_job_and_keeps_what_finished(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    Gated.started.clear()
    Gated.release.clear()
    items = ["a", "b", "gate", *[f"later-{i}" for i in range(50)]]
    job = queue.submit("gated", {"items": items, "workers": 1})
    worker = JobWorker(queue, tmp_path, registry=names, lease=0.3)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(worker.run_one()))
    runner.start()
    assert Gated.started.wait(30)
    queue.cancel(job.id)
    assert worker.halted.wait(30)  # the heartbeat saw the request and halted the run
    Gated.release.set()  # now the item in flight may finish
    runner.join(30)
    ended = result[0]
    assert ended.state == "cancelled" and ended.error == "cancelled"
    done = succeeded_items(tmp_path / job.id)
    assert done[:3] == [0, 1, 2]  # what started finished and was kept
    assert len(done) < len(items)  # and the rest did not start


def test_stop_now_gives_the_running_job_back_to_resume_from_its_items(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    Gated.started.clear()
    Gated.release.clear()
    items = ["a", "b", "gate", "c", "d"]
    job = queue.submit("gated", {"items": items, "workers": 1})
    pool = WorkerPool(queue, tmp_path, size=1, registry=names, lease=30, poll=0.05).start()
    assert Gated.started.wait(30)
    pool.workers[0].stop_now()  # no item starts after "gate"
    Gated.release.set()  # "gate" is in flight: it finishes
    pool.stop(now=True)
    back = queue.get(job.id)
    assert back.state == "queued" and back.worker is None
    assert succeeded_items(tmp_path / job.id) == [0, 1, 2]
    ended = JobWorker(queue, tmp_path, registry=names, lease=30).run_one()
    assert ended is not None and ended.id == job.id and ended.state == "succeeded"
    assert succeeded_items(tmp_path / job.id) == [0, 1, 2, 3, 4]
    assert engine.call_count == len(items)  # no item ran twice


def test_a_pool_runs_jobs_in_parallel_and_stops(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    jobs = [queue.submit("echo", {"items": [f"{j}-{i}" for i in range(5)]}) for j in range(4)]
    with WorkerPool(queue, tmp_path, size=2, registry=names, poll=0.05):
        finished = threading.Event()
        while queue.counts()["succeeded"] < len(jobs):
            finished.wait(0.05)  # look again shortly: the queue has no notifications
    assert {queue.get(j.id).state for j in jobs} == {"succeeded"}
    assert engine.call_count == 20


def test_a_job_past_its_timeout_is_stopped(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    Gated.started.clear()
    Gated.release.clear()
    job = queue.submit("gated", {"items": ["gate", "x", "y"], "workers": 1}, timeout=0.2)
    worker = JobWorker(queue, tmp_path, registry=names, lease=0.3)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(worker.run_one()))
    runner.start()
    assert Gated.started.wait(30)
    assert worker.halted.wait(30)  # the heartbeat saw the deadline pass
    Gated.release.set()
    runner.join(30)
    ended = result[0]
    assert ended.id == job.id and ended.state == "failed"
    assert ended.error == "timed out after 0.2 s"
    assert succeeded_items(tmp_path / job.id) == [0]  # the item in flight finished, kept


def test_a_retried_job_runs_its_failed_items_again_and_no_other(
    queue: JobQueue, engine: SimulatedEngine, tmp_path: Path
) -> None:
    items = [f"item-{i}" for i in range(10)]
    job = queue.submit("flaky", {"workers": 3}, items=items)
    worker = JobWorker(queue, tmp_path / "runs", registry=names, lease=5)
    Flaky.failing = True
    try:
        ended = worker.run_one()
        assert ended is not None and ended.state == "failed"
        assert ended.error == "5 item(s) failed"
        assert engine.call_count == 5
        Flaky.failing = False
        again = queue.retry(job.id)
        assert again.state == "queued" and again.error is None and again.finished_at is None
        ended = worker.run_one()
    finally:
        Flaky.failing = True
    assert ended is not None and ended.id == job.id and ended.state == "succeeded"
    assert engine.call_count == 10  # the five that failed, once more; none of the others
    assert sorted(c.split("item-")[1][0] for c in engine.calls[5:]) == ["1", "3", "5", "7", "9"]
    assert succeeded_items(tmp_path / "runs" / job.id) == list(range(10))
    assert ended.progress is not None and ended.progress["succeeded"] == 10
