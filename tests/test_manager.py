"""BatchManager: jobs, ordered results, auto-resume, retry of failed items, stats."""

from __future__ import annotations

import io
import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from symbatcher import BatchManager, ItemError
from symbatcher.dispatch import Dispatcher
from symbatcher.hooks.jobs import JobLimit
from symbatcher.testing import SimulatedEngine
from tests.expressions import TestExpression

PRICES = {"simulated": (1.0, 2.0)}


@pytest.mark.parametrize("size", [99, 100, 101])
def test_jobs_of_any_size_give_every_item_once_in_order(
    tmp_path: Path, engine: SimulatedEngine, size: int
) -> None:
    engine.latency = lambda rng: rng.uniform(0, 0.002)
    data = [f"item{i}" for i in range(size)]
    manager = BatchManager(
        TestExpression,
        data,
        items_per_job=10,
        max_parallel_jobs=3,
        state_path=tmp_path / "run",
        save_results_dir=tmp_path / "out",
        prices=PRICES,
    )
    stats = manager.run(print_progress=False)
    assert (stats.status, stats.succeeded, stats.failed, stats.pending) == ("completed", size, 0, 0)
    assert stats.jobs == -(-size // 10) and stats.jobs_done == stats.jobs
    assert list(stats.models) == ["simulated"] and stats.models["simulated"].calls == size
    assert stats.models["simulated"].cost == pytest.approx(stats.cost)
    outputs = list(manager.results())
    assert len(outputs) == size and all(f"item{i}\n" in out for i, out in enumerate(outputs))
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(size))
    view = manager.snapshot()
    assert [len(job["items"]) for job in view["jobs"]][-1] == size - 10 * (stats.jobs - 1)
    written = io.StringIO()
    manager.write_snapshot(written)  # the same JSON, one item held at a time
    assert json.loads(written.getvalue()) == json.loads(json.dumps(view))
    assert engine.call_count == size


def test_run_again_resumes_and_retry_failed_reruns_only_failures(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    engine.fail_on = lambda prompt: prompt.split("\n")[1] in {"item7", "item42"}
    data = [f"item{i}" for i in range(60)]
    manager = BatchManager(
        TestExpression, data, items_per_job=25, state_path=tmp_path / "run", retry=1
    )
    stats = manager.run(print_progress=False)
    assert (stats.succeeded, stats.failed) == (58, 2)
    failures = [o for o in manager.results() if isinstance(o, ItemError)]
    assert [f.index for f in failures] == [7, 42]
    assert manager.snapshot()["jobs"][0]["status"] == "partial"
    assert manager.run(print_progress=False).failed == 2
    assert engine.call_count == 60  # the second run() had nothing to do
    engine.fail_on = None
    with sqlite3.connect(tmp_path / "run" / "state.sqlite") as conn:  # as a Ctrl-C leaves it
        conn.execute("UPDATE items SET status = 'running', result = NULL WHERE idx = 3")
    conn.close()
    stats = manager.retry_failed(print_progress=False)
    assert (stats.succeeded, stats.failed, stats.status) == (60, 0, "completed")
    assert engine.call_count == 63  # the two failed, and the one left running
    assert "item42\n" in list(manager.results())[42]


def test_a_budget_holds_across_runs_of_the_manager(tmp_path: Path, engine: SimulatedEngine) -> None:
    """Items of one length cost the same, so the estimate for items in flight when the
    budget was reached is exact and a second run on the same budget has nothing left.
    (With items of different cost, a second run may rightly start a few more: the ones in
    flight cost less than estimated. That made this test flaky once.)"""
    data = [f"item{i:03d}" for i in range(300)]
    manager = BatchManager(
        TestExpression, data, state_path=tmp_path / "run", max_cost=0.0005, prices=PRICES
    )
    stats = manager.run(print_progress=False)
    assert stats.status == "budget_reached" and 0 < stats.succeeded < 300
    assert stats.pending is not None and stats.pending > 0
    calls = engine.call_count
    assert manager.run(print_progress=False).succeeded == stats.succeeded
    assert engine.call_count == calls
    bigger = BatchManager(
        TestExpression, data, state_path=tmp_path / "run", max_cost=1.0, prices=PRICES
    )
    assert bigger.run(print_progress=False).succeeded == 300
    assert engine.call_count == 300


def test_an_iterator_dataset_cannot_be_run_twice(tmp_path: Path, engine: SimulatedEngine) -> None:
    manager = BatchManager(TestExpression, iter(["a", "b"]), state_path=tmp_path / "run")
    manager.run(print_progress=False)
    with pytest.raises(RuntimeError, match="iterator that an earlier run"):
        manager.run(print_progress=False)


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="items_per_job"):
        BatchManager(TestExpression, [], items_per_job=0)
    with pytest.raises(ValueError, match="max_cost"):
        BatchManager(TestExpression, [], max_cost=-1)
    with pytest.raises(ValueError, match="max_inflight_batches"):
        BatchManager(TestExpression, [], max_inflight_batches=0)
    with pytest.raises(ValueError, match="linger"):
        BatchManager(TestExpression, [], linger=-1)


def test_a_cap_on_batches_out_at_once_reaches_the_engine(
    tmp_path: Path, dispatchers: list[Dispatcher]
) -> None:
    from symbatcher.testing import SimulatedBatchEngine, use_engine

    with use_engine(SimulatedBatchEngine(latency=0.02)) as gpu:
        manager = BatchManager(
            TestExpression,
            [f"item{i}" for i in range(24)],
            items_per_job=12,
            max_parallel_jobs=2,
            batch_size=4,
            max_inflight_batches=1,
            linger=0.02,
            state_path=tmp_path / "run",
            prices=PRICES,
        )
        assert manager.run(print_progress=False).succeeded == 24
    assert gpu.max_concurrency == 1 and sum(gpu.batches) == gpu.call_count
    assert [d.linger for d in dispatchers] == [0.02]


def test_job_limit_keeps_at_most_max_parallel_jobs_active(engine: SimulatedEngine) -> None:
    """One slow item per job holds its job open; later jobs must wait for a free slot."""
    rng = random.Random(3)
    engine.latency = lambda _rng: 0.02 if rng.random() < 0.1 else 0.0005
    limit = JobLimit(items_per_job=5, max_parallel_jobs=2)
    active: set[int] = set()
    peak = [0]
    lock = threading.Lock()

    from symbatcher import BatchScheduler
    from symbatcher.hooks.base import Hook, ItemContext

    class Watch(Hook):
        def on_item_start(self, item: ItemContext) -> None:
            with lock:
                active.add(item.index // 5)
                peak[0] = max(peak[0], len(limit._active))

    results = BatchScheduler(hooks=[limit, Watch()])(
        expr=TestExpression, dataset=[f"item{i}" for i in range(200)], num_workers=12
    )
    assert results.ok and len(results) == 200
    assert limit.most_active <= 2 and peak[0] <= 2


def test_progress_events_reach_the_caller_at_the_interval_asked(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    from symbatcher.hooks.progress import ProgressEvent

    events: list[ProgressEvent] = []
    manager = BatchManager(TestExpression, [f"i{n}" for n in range(30)], state_path=tmp_path / "r")
    manager.run(print_progress=False, on_progress=events.append, progress_interval=0)
    assert len(events) == 31  # one per item, and the closing one
    assert events[-1].done == 30 and events[-1].status == "completed"
