"""The ``store`` fixture: each store test runs on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from symbatcher.store import MemoryStore, RunStore, SQLiteStore


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    s: RunStore = SQLiteStore(tmp_path / "run") if request.param == "sqlite" else MemoryStore()
    s.open()
    yield s
    s.close()
