"""The run store contract, for every backend; and what only the SQLite one promises."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from symbatcher.errors import RunLockedError, StoreError
from symbatcher.store import ItemRecord, RunStore, SQLiteStore
from tests import ctrl_c


def _start(store: RunStore, index: int) -> None:
    store.item_started(ItemRecord(index=index, fingerprint=f"fp{index}", input=f'"in{index}"'))


def _finish(store: RunStore, index: int, status: str = "succeeded") -> None:
    record = ItemRecord(index=index, fingerprint=f"fp{index}", status=status, attempts=1)
    if status == "succeeded":
        record.result = f'"out{index}"'
    else:
        record.error_type, record.error_message = "ValueError", f"bad {index}"
    store.item_finished(record).result()  # durable once the future completes


def test_each_models_calls_add_up_over_items_and_processes(store: RunStore) -> None:
    for i in range(3):
        _start(store, i)
    store.add_call(0, 10, 5, 0.5, "big")
    store.add_call(1, 2, 1, 0.01, "small")
    store.add_call(1, 20, 10, 1.0, "big")
    store.add_call(2, 3, 3, 0.0)  # a call whose model was not known: the item's alone
    _finish(store, 0)
    _finish(store, 1)
    _finish(store, 2)
    used = store.usage_by_model()
    assert list(used) == ["big", "small"]  # the costliest first
    assert (used["big"].calls, used["big"].tokens, used["big"].cost) == (2, 45, 1.5)
    assert (used["small"].calls, used["small"].prompt_tokens, used["small"].cost) == (1, 2, 0.01)
    assert store.totals().cost == pytest.approx(1.51)  # the item totals hold every call
    if isinstance(store, SQLiteStore):  # a later process adds to the same figures
        store.close()
        again = SQLiteStore(store.directory)
        with again:
            _start(again, 3)
            again.add_call(3, 1, 1, 0.5, "small")
            _finish(again, 3)
        assert again.usage_by_model()["small"].calls == 2
        assert again.usage_by_model()["small"].cost == pytest.approx(0.51)
        store.open()


def test_a_store_written_before_models_were_kept_reads_as_none(tmp_path: Path) -> None:
    run = SQLiteStore(tmp_path / "old")
    with run:
        _start(run, 0)
        _finish(run, 0)
    with sqlite3.connect(run.path) as conn:
        conn.execute("DROP TABLE models")  # as 0.7.4 and earlier wrote it
    assert run.usage_by_model() == {}  # read-only, as status reads a live run
    with run:  # the next process to write adds the table
        _start(run, 1)
        run.add_call(1, 1, 1, 0.1, "m")
        _finish(run, 1)
    assert run.usage_by_model()["m"].calls == 1


def test_items_go_running_then_finished_with_their_figures(store: RunStore) -> None:
    for i in range(3):
        _start(store, i)
    store.add_call(0, 10, 5, 0.5)
    store.add_call(0, 1, 1, 0.25)
    _finish(store, 0)
    _finish(store, 1, "failed")
    rows = list(store.items())
    assert [(r.index, r.status) for r in rows] == [(0, "succeeded"), (1, "failed"), (2, "running")]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens, rows[0].cost) == (11, 6, 0.75)
    assert rows[0].result == '"out0"' and rows[0].input == '"in0"'
    assert rows[1].error_message == "bad 1"
    assert store.finished() == {0: ("succeeded", "fp0"), 1: ("failed", "fp1")}
    totals = store.totals()
    assert (totals.items, totals.succeeded, totals.failed, totals.running) == (3, 1, 1, 1)
    assert totals.cost == pytest.approx(0.75)


def test_totals_count_the_items_that_ended_since_a_time(store: RunStore) -> None:
    for index, (status, ended) in enumerate(
        [("succeeded", 10.0), ("failed", 20.0), ("succeeded", 30.0)]
    ):
        _start(store, index)
        record = ItemRecord(index=index, fingerprint=f"fp{index}", status=status, attempts=1)
        record.completed_at = ended
        store.item_finished(record).result()
    _start(store, 3)  # running: never counted as ended
    assert [store.totals(since).finished_since for since in (None, 0.0, 20.0, 30.5)] == [0, 3, 2, 0]


def test_rerun_of_a_failed_item_clears_its_error_and_adds_attempts(store: RunStore) -> None:
    _start(store, 0)
    _finish(store, 0, "failed")
    _start(store, 0)
    _finish(store, 0)
    (row,) = store.items()
    assert (row.status, row.error_type, row.attempts) == ("succeeded", None, 2)


def test_job_and_error_columns_are_kept_whether_set_or_not(store: RunStore) -> None:
    store.item_started(ItemRecord(index=0, fingerprint="fp0", input='"a"', job=3))
    store.item_started(ItemRecord(index=1, fingerprint="fp1", input='"b"'))
    failed = ItemRecord(index=0, fingerprint="fp0", status="failed", attempts=1)
    failed.error_type, failed.error_traceback = "KeyError", "Traceback: ..."
    store.item_finished(failed).result()
    store.item_finished(ItemRecord(1, "fp1", "succeeded", result="1", attempts=1)).result()
    first, second = store.items()
    assert (first.job, first.error_type, first.error_message) == (3, "KeyError", None)
    assert (first.error_traceback, first.result) == ("Traceback: ...", None)
    assert (second.job, second.error_type, second.error_traceback) == (None, None, None)
    assert second.result == "1"


def test_writes_to_a_store_that_is_not_open_fail_and_name_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "run")
    with pytest.raises(StoreError, match="is not open"):
        _start(store, 0)
    with store:
        _start(store, 0)
        _finish(store, 0)
    for write in (lambda: _start(store, 1), lambda: store.add_call(1, 1, 1, 0.0)):
        with pytest.raises(StoreError, match="is not open"):
            write()
    assert [row.status for row in store.items()] == ["succeeded"]


def test_items_filter_by_status_and_start(store: RunStore) -> None:
    for i in range(6):
        _start(store, i)
        _finish(store, i, "failed" if i % 2 else "succeeded")
    assert [r.index for r in store.items(("failed",))] == [1, 3, 5]
    assert [r.index for r in store.items(start=4)] == [4, 5]


def test_finished_reads_a_page_in_index_order(store: RunStore) -> None:
    for i in (5, 1, 3, 0, 4):
        _start(store, i)
    for i, status in ((0, "succeeded"), (1, "failed"), (3, "succeeded"), (5, "succeeded")):
        _finish(store, i, status)  # 4 stays running
    assert list(store.finished()) == [0, 1, 3, 5]
    assert store.finished(start=1, limit=2) == {1: ("failed", "fp1"), 3: ("succeeded", "fp3")}
    assert list(store.finished(("succeeded",), start=1)) == [3, 5]
    assert store.finished(start=6) == {}


def test_items_started_out_of_order_read_in_order_from_any_start(store: RunStore) -> None:
    import random

    indices = list(range(1500))
    random.Random(7).shuffle(indices)
    for i in indices:
        _start(store, i)
    for i in indices:  # a third stay running; the last finish is durable after every start
        if i % 3:
            _finish(store, i, "failed" if i % 3 == 1 else "succeeded")
    assert [r.index for r in store.items()] == list(range(1500))  # over several chunks
    assert [r.index for r in store.items(start=700)] == list(range(700, 1500))
    assert [r.index for r in store.items(("failed",), 1000)] == list(range(1000, 1500, 3))
    page = store.finished(("succeeded",), start=2, limit=4)
    assert list(page) == [2, 5, 8, 11]


def test_a_memory_store_read_copies_what_it_returns_not_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Paging a large in-memory run (a retry, a resume, a snapshot) must not cost the run
    once per page: a read from anywhere copies only the records it hands out."""
    import copy

    from symbatcher.store import MemoryStore
    from symbatcher.store import memory as module

    store = MemoryStore()
    for i in range(20_000):
        _start(store, i)
    copies = 0
    original = copy.copy

    def counted(record: ItemRecord) -> ItemRecord:
        nonlocal copies
        copies += 1
        return original(record)

    monkeypatch.setattr(module.copy, "copy", counted)
    reader = store.items(start=15_000)
    assert [next(reader).index for _ in range(3)] == [15_000, 15_001, 15_002]
    reader.close()
    assert copies <= 512  # one chunk
    assert len(store.finished(("running",), start=19_990)) == 10


def test_meta_merges(store: RunStore) -> None:
    assert store.read_meta() == {}
    store.write_meta({"run_id": "a", "total": 3})
    store.write_meta({"total": 4})
    assert store.read_meta() == {"run_id": "a", "total": 4}


def test_many_writers_all_land_and_share_commits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "run", synchronous="NORMAL")
    store.open()
    try:

        def write(worker: int) -> None:
            for j in range(50):
                index = worker * 50 + j
                _start(store, index)
                store.add_call(index, 1, 1, 0.001)
                _finish(store, index)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        totals = store.totals()
        assert totals.succeeded == 800
        assert totals.prompt_tokens == 800
        assert store.commits < 800 * 2  # group commit: fewer commits than writes
    finally:
        store.close()


def test_state_survives_reopen_and_is_readable_while_another_holds_it(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "run") as first:
        _start(first, 0)
        _finish(first, 0)
        reader = SQLiteStore(tmp_path / "run")  # not opened: read-only inspection
        assert [r.index for r in reader.items()] == [0]
    with SQLiteStore(tmp_path / "run") as again:
        assert again.finished() == {0: ("succeeded", "fp0")}


def test_a_second_holder_fails_at_once_naming_the_first(tmp_path: Path) -> None:
    with (
        SQLiteStore(tmp_path / "run"),
        pytest.raises(RunLockedError, match=r"in use by pid \d+"),
    ):
        SQLiteStore(tmp_path / "run").open()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from symbatcher.store import SQLiteStore\n"
        f"SQLiteStore({str(tmp_path / 'run')!r}).open()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    assert (tmp_path / "run" / "holder.json").exists()  # the note stayed, the lock did not
    with SQLiteStore(tmp_path / "run") as store:
        assert store.totals().items == 0


def test_not_a_state_file_is_a_clear_error_and_releases_the_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable symbatcher state file"):
        SQLiteStore(run).open()
    (run / "state.sqlite").unlink()
    with SQLiteStore(run):
        pass


def test_a_failed_commit_stops_writes_with_a_clear_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "run")

    def broken_commit(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    store._commit = broken_commit  # type: ignore[method-assign]
    store.open()
    try:
        _start(store, 0)
        with pytest.raises(StoreError, match="disk I/O error"):
            _finish(store, 0)
        with pytest.raises(StoreError, match="failed"):
            _start(store, 1)
    finally:
        store.close()


def test_a_ctrl_c_while_closing_keeps_the_run_until_its_last_commit_is_in(
    tmp_path: Path,
) -> None:
    """The writer lets go of the file and the lock itself, after its last commit."""
    run = tmp_path / "run"
    store = SQLiteStore(run)
    committing, go_on = threading.Event(), threading.Event()
    commit = store._commit

    def slow_commit(conn: sqlite3.Connection) -> None:  # a slow disk
        committing.set()
        go_on.wait(timeout=60)
        commit(conn)

    store._commit = slow_commit  # type: ignore[method-assign]
    store.open()
    _start(store, 0)
    finished = store.item_finished(
        ItemRecord(index=0, fingerprint="fp0", status="succeeded", result='"out0"', attempts=1)
    )

    def press_ctrl_c_during_the_commit() -> None:
        committing.wait(timeout=60)
        ctrl_c.main_thread_waits_in("close")
        ctrl_c.press()

    presser = threading.Thread(target=press_ctrl_c_during_the_commit)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            store.close()
    finally:
        presser.join()
    try:
        with pytest.raises(RunLockedError):  # still this run's while its commit goes on
            SQLiteStore(run).open()
        assert not finished.done()
    finally:
        go_on.set()
        store.close()  # waits again, now to the end
    finished.result(timeout=0)
    with SQLiteStore(run) as again:  # the lock is free and the item is in
        assert again.finished() == {0: ("succeeded", "fp0")}
    assert not any(t.name.startswith("symbatcher-store") for t in threading.enumerate())


def test_reading_a_missing_run_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run state at"):
        list(SQLiteStore(tmp_path / "nothing").items())


def test_writes_of_one_commit_share_its_future_and_later_writes_get_the_next(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "run", commit_interval=60)  # commits only when asked
    store.open()
    try:
        for i in range(3):
            _start(store, i)
        first = store.item_finished(ItemRecord(index=0, fingerprint="fp0", status="succeeded"))
        second = store.item_finished(ItemRecord(index=1, fingerprint="fp1", status="succeeded"))
        assert first is second and not first.done()
        store.expedite()
        first.result(timeout=30)
        third = store.item_finished(ItemRecord(index=2, fingerprint="fp2", status="succeeded"))
        assert third is not first and not third.done()
        assert [r.index for r in store.items(("succeeded",))] == [0, 1]
        store.expedite()
        third.result(timeout=30)
        assert store.totals().succeeded == 3
    finally:
        store.close()


def test_calls_count_whether_their_item_finishes_in_the_same_commit_or_a_later_one(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "run", commit_interval=60)
    store.open()
    try:
        _start(store, 0)
        _start(store, 1)
        store.add_call(0, 10, 1, 0.5)  # item 0: call and finish in one commit
        store.add_call(1, 20, 2, 0.25)  # item 1: one call committed before its finish
        done = store.item_finished(ItemRecord(index=0, fingerprint="fp0", status="succeeded"))
        store.expedite()
        done.result(timeout=30)
        assert [(r.prompt_tokens, r.status) for r in store.items()] == [
            (10, "succeeded"),
            (20, "running"),
        ]
        store.add_call(1, 5, 1, 0.25)
        done = store.item_finished(ItemRecord(index=1, fingerprint="fp1", status="failed"))
        store.expedite()
        done.result(timeout=30)
        rows = list(store.items())
        assert [(r.prompt_tokens, r.completion_tokens, r.cost) for r in rows] == [
            (10, 1, 0.5),
            (25, 3, 0.5),
        ]
    finally:
        store.close()
