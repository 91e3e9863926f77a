"""``store.summary``: a run's counts and its failures by error type, cheap on big runs."""

from __future__ import annotations

import json
import random
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from symbatcher.store import ItemRecord, MemoryStore, RunStore, SQLiteStore
from symbatcher.store import sqlite as sqlite_store
from symbatcher.store.snapshot import snapshot
from symbatcher.store.summary import EXAMPLES, jobs_done, summarize


def _finish(store: RunStore, index: int, error: tuple[str, str] | None = None) -> None:
    store.item_started(ItemRecord(index=index, fingerprint=f"fp{index}"))
    record = ItemRecord(index=index, fingerprint=f"fp{index}", attempts=1)
    if error is None:
        store.add_call(index, 10, 5, 0.5)
        record.status, record.result = "succeeded", '"ok"'
    else:
        record.status, (record.error_type, record.error_message) = "failed", error
    store.item_finished(record).result()


def test_failures_are_grouped_by_type_largest_first_with_a_few_examples(store: RunStore) -> None:
    store.write_meta({"total": 20})  # items 12-19 never started
    for i in range(12):
        if i % 3 == 0:
            _finish(store, i, ("ValueError", f"bad {i}\nmore lines"))
        elif i == 7:
            _finish(store, i, ("EngineTransportError", "connection reset"))
        else:
            _finish(store, i)
    store.item_started(ItemRecord(index=12, fingerprint="fp12"))  # running when it stopped
    summary = summarize(store)
    assert (summary.items, summary.succeeded, summary.failed, summary.pending) == (20, 7, 5, 8)
    assert summary.cost == pytest.approx(3.5)
    first, second = summary.failures
    assert (first.error_type, first.count, first.message) == ("ValueError", 4, "bad 0")
    assert first.indices == [0, 3, 6][:EXAMPLES]
    assert (second.error_type, second.count, second.indices) == ("EngineTransportError", 1, [7])


def test_a_big_run_is_summarized_without_holding_its_items(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    n = 20_000
    with sqlite3.connect(run / "state.sqlite") as conn:
        conn.executescript(sqlite_store._SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('total', ?)", (json.dumps(n),))
        conn.executemany(
            "INSERT INTO items (idx, fingerprint, status, input, result, error_type, "
            "error_message, cost) VALUES (?, ?, ?, ?, ?, ?, ?, 0.001)",
            (
                (i, f"fp{i}", "failed", f'"input {i}"', None, "ValueError", f"bad {i}")
                if i % 10 == 0
                else (i, f"fp{i}", "succeeded", f'"input {i}"', f'"output {i}"', None, None)
                for i in range(n)
            ),
        )
    conn.close()
    tracemalloc.start()
    try:
        summary = summarize(SQLiteStore(run))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (summary.items, summary.failed, summary.failures[0].count) == (n, n // 10, n // 10)
    # a dict per item (what the full snapshot builds) would be several MB here
    assert peak < 1_000_000, peak


@pytest.mark.parametrize("seed", range(20))
def test_jobs_done_counts_what_the_snapshot_counts(seed: int) -> None:
    rng = random.Random(seed)
    per_job, total = rng.randint(1, 7), rng.randint(0, 40)
    store = MemoryStore()
    store.open()
    for i in rng.sample(range(total), rng.randint(0, total)):  # some never started
        store.item_started(ItemRecord(index=i, fingerprint=f"fp{i}"))
        status = rng.choice(["succeeded", "failed", "running"])
        if status != "running":
            store.item_finished(ItemRecord(index=i, fingerprint=f"fp{i}", status=status))
    known = rng.random() < 0.7
    store.write_meta({"items_per_job": per_job, **({"total": total} if known else {})})
    view = snapshot(store)
    expected = sum(job["status"] in ("succeeded", "failed", "partial") for job in view["jobs"])
    assert jobs_done(store, per_job, total if known else None) == expected
