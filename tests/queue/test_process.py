"""``symbatcher worker``: more processes over one queue folder, each job run by one of them,
once; how such a process starts and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from symbatcher.cli import main
from symbatcher.interrupts import Terminated
from symbatcher.providers import catalog
from symbatcher.queue import ExpressionRegistry, JobQueue
from symbatcher.queue.jobs import ENDED, Job
from symbatcher.queue.process import work
from symbatcher.queue.worker import JobWorker
from symbatcher.store.sqlite import SQLiteStore
from symbatcher.testing import SimulatedEngine, use_engine
from tests import ctrl_c
from tests.expressions import TestExpression

CHILD = Path(__file__).with_name("worker_child.py")
READY = "symbatcher worker: 1 worker(s) on the queue in"


def _wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    """Polled: another process's state is all there is to watch."""
    for _ in range(1200):
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        threading.Event().wait(0.05)
    raise AssertionError(f"never: {what}")


class WorkerProcess:
    """``symbatcher worker --workers 1`` over ``folder``, its stderr in ``log``."""

    def __init__(
        self, folder: Path, log: Path, latency: float, env: dict[str, str] | None = None
    ) -> None:
        self.folder, self.log, self.latency = folder, log, latency
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), str(self.folder), str(self.latency), "30"],
                env=self.env,
                stderr=err,
            )
        self.wait_for_line(READY)
        return self

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for_line(self, text: str) -> None:
        assert self.process is not None
        _wait_for(lambda: text in self.text(), f"it said {text!r}", self.process)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_two_worker_processes_share_a_queue_and_run_each_job_once(tmp_path: Path) -> None:
    """Two long jobs, submitted once both processes look at the queue, run at once, one in
    each (a job takes seconds, an idle worker looks every half second); then short jobs.
    Every job runs once, every item once with its own answer; Ctrl-C ends both (exit 0)."""
    folder = tmp_path / "svc"
    queue = JobQueue(folder / "jobs.sqlite")
    workers = [WorkerProcess(folder, tmp_path / f"w{i}.log", latency=0.2) for i in range(2)]
    try:
        for worker in workers:
            worker.start()
        settings = {"workers": 3, "batch_size": 3}
        long = [
            queue.submit("echo", settings, items=[f"long{j}-{i}" for i in range(30)])
            for j in range(2)
        ]
        short = [queue.submit("echo", items=[f"short{j}-{i}" for i in range(4)]) for j in range(4)]
        jobs = long + short
        assert workers[0].process is not None
        _wait_for(
            lambda: all(queue.get(job.id).state in ENDED for job in jobs),
            "every job ended",
            workers[0].process,
        )
        for worker in workers:
            worker.signal(signal.SIGINT)
        codes = [worker.wait() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    ended = [queue.get(job.id) for job in jobs]
    queue.close()
    assert codes == [0, 0]
    assert [(job.state, job.claims) for job in ended] == [("succeeded", 1)] * len(jobs)
    for job in jobs:
        records = list(SQLiteStore(folder / "runs" / job.id).items())
        inputs = [json.loads(str(record.input)) for record in records]
        assert len(records) == (job.total or 0) and len(set(inputs)) == len(records)
        answers = [str(record.result) for record in records]
        assert all(f"\\n{item}\\n" in a for item, a in zip(inputs, answers, strict=True))
        assert all(record.attempts == 1 for record in records)
    logs = [worker.text() for worker in workers]
    runners = [job.worker for job in ended[:2]]
    assert runners[0] != runners[1]  # the two long jobs ran at once, in two processes
    for runner in runners:
        assert sum(f"started by {runner}" in log for log in logs) == 1
    assert all("started by" in log for log in logs)


def _a_long_job(tmp_path: Path) -> tuple[JobQueue, Job, WorkerProcess]:
    """A queue with a job of 2,000 items (about 25 s), and a worker process for it."""
    folder = tmp_path / "svc"
    queue = JobQueue(folder / "jobs.sqlite")
    job = queue.submit("echo", {"workers": 4}, items=[f"item-{i}" for i in range(2000)])
    return queue, job, WorkerProcess(folder, tmp_path / "w.log", latency=0.05)


def test_ctrl_c_waits_for_the_running_job_and_a_second_one_gives_it_back(
    tmp_path: Path,
) -> None:
    queue, job, worker = _a_long_job(tmp_path)
    try:
        worker.start()
        assert worker.process is not None
        _wait_for(
            lambda: (queue.get(job.id).progress or {}).get("done", 0) >= 4,
            "the job was under way",
            worker.process,
        )
        worker.signal(signal.SIGINT)
        worker.wait_for_line(f"waiting for 1 running job(s) to finish ({job.id})")
        assert queue.get(job.id).state == "running"  # the first Ctrl-C lets it run
        worker.signal(signal.SIGINT)
        code = worker.wait()
    finally:
        worker.kill()
    back = queue.get(job.id)
    queue.close()
    assert code == 0
    assert "stopping now; 1 running job(s) finish their items in flight" in worker.text()
    assert "when the worker starts again" in worker.text()
    assert back.state == "queued" and back.worker is None
    done = len(list(SQLiteStore(tmp_path / "svc" / "runs" / job.id).items()))
    assert 4 <= done < 2000  # kept, to resume from


def test_sigterm_gives_the_running_job_back_at_once(tmp_path: Path) -> None:
    queue, job, worker = _a_long_job(tmp_path)
    try:
        worker.start()
        assert worker.process is not None
        _wait_for(lambda: queue.get(job.id).state == "running", "it took the job", worker.process)
        worker.signal(signal.SIGTERM)
        code = worker.wait()
    finally:
        worker.kill()
    back = queue.get(job.id)
    queue.close()
    assert code == 143  # "terminated", as the other commands say it
    assert f"go back to the queue ({job.id})" in worker.text()
    assert back.state == "queued"


def test_a_sigterm_another_thread_took_gives_the_running_job_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel gives a signal sent to the process to any of its threads (CI saw a
    worker's take a SIGTERM): the process must stop as if its main thread had, and give
    the job back at once, not after running it to its end. ``work`` in this process, its
    first call taking the SIGTERM on its own thread."""
    names = ExpressionRegistry()
    names.register("summarize")(TestExpression)
    monkeypatch.setattr("symbatcher.queue.worker.default_registry", names)
    stop_now, halted = JobWorker.stop_now, threading.Event()

    def stop_now_and_tell(self: JobWorker) -> None:
        stop_now(self)
        halted.set()

    monkeypatch.setattr(JobWorker, "stop_now", stop_now_and_tell)
    taker: list[tuple[threading.Thread, list[str]]] = []

    class TakesSigterm(SimulatedEngine):
        def forward(self, argument: Any) -> Any:
            if not taker:
                taker.append(ctrl_c.taken_by_another_thread(signal.SIGTERM, halted, "work"))
                halted.wait(timeout=60)
            return super().forward(argument)

    queue = JobQueue(tmp_path / "svc" / "jobs.sqlite")
    job = queue.submit("summarize", {"workers": 1}, items=["first", "second"])
    with use_engine(TakesSigterm()) as engine, pytest.raises(Terminated):
        work(tmp_path / "svc", workers=1)
    thread, missed = taker[0]
    thread.join()
    back = queue.get(job.id)
    queue.close()
    assert not missed
    assert back.state == "queued" and engine.call_count == 1  # "second" waits for its claim
    [record] = SQLiteStore(tmp_path / "svc" / "runs" / job.id).items()
    assert record.status == "succeeded"  # the call in flight finished and was kept


def test_a_worker_with_no_engine_starts_with_a_providers_key_and_not_without(
    tmp_path: Path,
) -> None:
    """With a key it starts, saying it takes only jobs that name their model (a job with
    none stays queued for another process); with none it refuses, saying both ways."""
    folder = tmp_path / "svc"
    queue = JobQueue(folder / "jobs.sqlite")
    plain = queue.submit("echo", items=["a"])
    no_keys = {entry.key_variable: "" for entry in catalog()}
    env = {**no_keys, "TEST_NO_ENGINE": "1"}
    refused = WorkerProcess(folder, tmp_path / "refused.log", latency=0, env=env)
    keyed = WorkerProcess(
        folder, tmp_path / "keyed.log", latency=0, env={**env, "DEEPSEEK_API_KEY": "sk-test"}
    )
    try:
        with pytest.raises(AssertionError, match=r"the worker exited \(2\)"):
            refused.start()
        keyed.start()
        keyed.signal(signal.SIGINT)
        code = keyed.wait()
    finally:
        refused.kill()
        keyed.kill()
    left = queue.get(plain.id)
    queue.close()
    assert "no engine named 'neurosymbolic'" in refused.text()
    assert "Or set a provider's API key variable" in refused.text()
    assert "where the worker starts" in refused.text()
    assert "takes only jobs that name a model in settings.model; keys set: DEEPSEEK_API_KEY" in (
        keyed.text()
    )
    assert code == 0 and (left.state, left.claims) == ("queued", 0)


def test_a_worker_on_a_folder_with_no_queue_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped folder: it would otherwise make an empty queue and wait there for good."""
    monkeypatch.chdir(tmp_path)
    assert main(["worker", "--dir", "svc-typo"]) == 2
    err = capsys.readouterr().err
    assert "no queue in svc-typo: svc-typo/jobs.sqlite does not exist" in err
    assert "`symbatcher serve --dir svc-typo`" in err
    assert not (tmp_path / "svc-typo").exists()


def test_a_worker_process_whose_workers_all_stopped_on_an_error_says_so(
    tmp_path: Path,
    engine: object,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its workers gone (the queue unreadable, say), it must not wait for good."""
    from symbatcher.errors import ServiceError

    def broken(self: JobWorker) -> None:
        raise OSError("disk I/O error")

    JobQueue(tmp_path / "svc" / "jobs.sqlite").close()
    monkeypatch.setattr(JobWorker, "serve", broken)
    with pytest.raises(ServiceError, match="every worker stopped on an error"):
        work(tmp_path / "svc", workers=3)
    stopped = [r for r in caplog.records if "stopped on an error" in r.getMessage()]
    errors = [record.exc_info[1] if record.exc_info else None for record in stopped]
    assert len(stopped) == 3 and all(str(error) == "disk I/O error" for error in errors)
