"""Shared fixtures: a simulated engine bound as 'neurosymbolic', and a thread-leak guard."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every test ends with exactly the threads it started with."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads outlived the test: {[t.name for t in leaked]}"


@pytest.fixture
def engine() -> Iterator[SimulatedEngine]:
    with use_engine(SimulatedEngine()) as eng:
        yield eng


@pytest.fixture
def batch_engine() -> Iterator[SimulatedBatchEngine]:
    with use_engine(SimulatedBatchEngine()) as eng:
        yield eng
