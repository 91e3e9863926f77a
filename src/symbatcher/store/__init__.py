"""Where a run's state lives: one interface, a SQLite backend and an in-memory one."""

from symbatcher.store.base import ItemRecord, ModelUsage, RunStore, StoreTotals
from symbatcher.store.export import export_results
from symbatcher.store.memory import MemoryStore
from symbatcher.store.snapshot import load_snapshot, snapshot
from symbatcher.store.sqlite import SQLiteStore

__all__ = [
    "ItemRecord",
    "MemoryStore",
    "ModelUsage",
    "RunStore",
    "SQLiteStore",
    "StoreTotals",
    "export_results",
    "load_snapshot",
    "snapshot",
]
