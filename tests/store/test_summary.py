"""``store.summary``: a run's counts and its failures by error type, cheap on big runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from symbatcher.store import ItemRecord, RunStore, SQLiteStore
from symbatcher.store.snapshot import snapshot
from symbatcher.store.summary import EXAMPLES, jobs_done, summarize
from tests.store.synthetic import big_run, peak_bytes, random_store


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
    store.write_meta({"total": 20})  # items 13-19 never started
    # running when it stopped (written before the finished ones, whose writes wait for it)
    store.item_started(ItemRecord(index=12, fingerprint="fp12"))
    for i in range(12):
        if i % 3 == 0:
            _finish(store, i, ("ValueError", f"bad {i}\nmore lines"))
        elif i == 7:
            _finish(store, i, ("EngineTransportError", "connection reset"))
        else:
            _finish(store, i)
    summary = summarize(store)
    assert (summary.items, summary.succeeded, summary.failed, summary.pending) == (20, 7, 5, 8)
    assert summary.running == 1
    assert summary.cost == pytest.approx(3.5)
    first, second = summary.failures
    assert (first.error_type, first.count, first.message) == ("ValueError", 4, "bad 0")
    assert first.indices == [0, 3, 6][:EXAMPLES]
    assert (second.error_type, second.count, second.indices) == ("EngineTransportError", 1, [7])


def test_a_big_run_is_summarized_without_holding_its_items(tmp_path: Path) -> None:
    n = 20_000
    summary, peak = peak_bytes(lambda: summarize(SQLiteStore(big_run(tmp_path / "run", n))))
    assert (summary.items, summary.failed, summary.failures[0].count) == (n, n // 10, n // 10)
    # a dict per item (what the full snapshot builds) would be several MB here
    assert peak < 1_000_000, peak


@pytest.mark.parametrize("seed", range(20))
def test_jobs_done_counts_what_the_snapshot_counts(seed: int) -> None:
    store, per_job, total = random_store(seed)
    known = store.read_meta().get("total")
    view = snapshot(store)
    expected = sum(job["status"] in ("succeeded", "failed", "partial") for job in view["jobs"])
    one_job = total or 1  # no items_per_job: the snapshot's one job holds every item
    assert jobs_done(store, per_job or one_job, known) == expected
