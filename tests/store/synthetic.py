"""Runs made up for the store's readers: a big SQLite run written directly, random small
stores, and the peak memory a reader takes."""

from __future__ import annotations

import json
import random
import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symbatcher.store import ItemRecord, MemoryStore
from symbatcher.store import sqlite as sqlite_store


def big_run(run: Path, n: int) -> Path:
    """A finished run of ``n`` items, every tenth failed, written in one transaction."""
    run.mkdir()
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
    return run


def random_store(seed: int) -> tuple[MemoryStore, int | None, int]:
    """Items of a run in every state, some never started; (store, items_per_job, total)."""
    rng = random.Random(seed)
    per_job, total = rng.choice([None, 1, 3, 7]), rng.randint(0, 40)
    store = MemoryStore()
    store.open()
    for i in rng.sample(range(total), rng.randint(0, total)):
        store.item_started(ItemRecord(index=i, fingerprint=f"fp{i}"))
        store.add_call(i, 1, 2, rng.random())
        status = rng.choice(["succeeded", "failed", "running"])
        if status != "running":
            record = ItemRecord(index=i, fingerprint=f"fp{i}", status=status, completed_at=1e9)
            if status == "failed":
                record.error_type, record.error_message = "ValueError", f"bad {i}"
            store.item_finished(record)
    known = rng.random() < 0.7
    store.write_meta({"items_per_job": per_job, **({"total": total} if known else {})})
    return store, per_job, total


def peak_bytes(read: Callable[[], Any]) -> tuple[Any, int]:
    """What ``read()`` returns, and the most memory it held at once (tracemalloc)."""
    tracemalloc.start()
    try:
        result = read()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
