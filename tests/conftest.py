"""Shared fixtures: a simulated engine bound as 'neurosymbolic', and a thread-leak guard."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from symbatcher.dispatch import Dispatcher
from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises() -> None:
    """The Ctrl-C tests send SIGINT to this process. A shell starts a background job
    (``pytest &``) with SIGINT ignored, and Python then installs no handler of its own:
    install it, so they test symbatcher, not how the suite was started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
def dispatchers(monkeypatch: pytest.MonkeyPatch) -> list[Dispatcher]:
    """Every Dispatcher the test's runs make: what reached the run of the settings given."""
    made: list[Dispatcher] = []
    init = Dispatcher.__init__

    def recording(self: Dispatcher, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Dispatcher, "__init__", recording)
    return made
