"""``store.snapshot``: the JSON view of a run, as a dict or written out as it is read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from symbatcher.store import ItemRecord, SQLiteStore
from symbatcher.store.snapshot import snapshot, write_snapshot
from tests.store.synthetic import big_run, peak_bytes, random_store


class _Sink:
    """A file that keeps only how much was written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        return len(text)


@pytest.mark.parametrize("seed", range(40))
def test_the_written_snapshot_is_the_snapshot(seed: int) -> None:
    store, _, _ = random_store(seed)
    out = io.StringIO()
    write_snapshot(store, out)
    assert json.loads(out.getvalue()) == json.loads(json.dumps(snapshot(store)))


def test_the_snapshot_of_a_big_run_is_written_without_holding_its_items(tmp_path: Path) -> None:
    store = SQLiteStore(big_run(tmp_path / "run", 20_000))
    sink = _Sink()
    _, peak = peak_bytes(lambda: write_snapshot(store, sink))  # type: ignore[arg-type]
    assert sink.size > 2_000_000  # 20,000 items, about 150 characters each
    assert peak < 1_000_000, peak  # snapshot() holds them all: about 10 MB here


def test_a_slow_reader_of_the_snapshot_does_not_keep_a_run_s_log_from_being_reset(
    tmp_path: Path,
) -> None:
    """Whoever consumes ``status --json`` (a pager, say) may take its time. A read held
    open that long would keep a run that goes on from resetting its write-ahead log."""
    import sqlite3

    run = big_run(tmp_path / "run", 5_000)
    writer = sqlite3.connect(run / "state.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    resets: list[int] = []

    class _Slow(_Sink):
        def write(self, text: str) -> int:
            if self.size < 100_000 <= self.size + len(text):  # a few hundred items in
                writer.execute("UPDATE items SET cost = 0.002 WHERE idx = 4999")  # the run
                busy = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                resets.append(busy)
            return super().write(text)

    write_snapshot(SQLiteStore(run), _Slow())
    writer.close()
    assert resets == [0]  # 1 (busy): a reader held the log


def test_an_export_and_a_manager_s_results_hold_no_read_open_while_they_are_consumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the snapshot: an export of a run going on, or a program working through
    ``BatchManager.results()``, must not keep the run's log from being reset."""
    import sqlite3

    from symbatcher import BatchManager
    from symbatcher.store import export

    run = big_run(tmp_path / "run", 5_000)
    writer = sqlite3.connect(run / "state.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")

    def reset() -> int:
        writer.execute("UPDATE items SET cost = 0.002 WHERE idx = 4999")  # the run goes on
        busy: int = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy

    resets: list[int] = []
    row = export.result_row

    def row_and_reset(record: ItemRecord) -> dict[str, object]:
        if record.index == 1000:  # an export a fifth of the way through
            resets.append(reset())
        return row(record)

    monkeypatch.setattr(export, "result_row", row_and_reset)
    assert export.export_results(SQLiteStore(run), tmp_path / "out.jsonl") == 5_000
    for number, _ in enumerate(BatchManager(object, [], state_path=run).results()):
        if number == 1000:  # a program a fifth of the way through the outcomes
            resets.append(reset())
    writer.close()
    assert resets == [0, 0]  # 1 (busy): a reader held the log
