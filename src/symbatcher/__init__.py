"""symbatcher: run symbolicai Expressions over large datasets with batched engine calls."""

from symbatcher.binding import EngineBinding
from symbatcher.errors import (
    BatchProtocolError,
    DatasetError,
    EngineNotAvailableError,
    RunCancelledError,
    SymaiConfigError,
    SymbatcherError,
)
from symbatcher.results import ItemError, RunResults, RunStats
from symbatcher.scheduler import BatchScheduler, RunStream

__version__ = "0.2.0"

__all__ = [
    "BatchProtocolError",
    "BatchScheduler",
    "DatasetError",
    "EngineBinding",
    "EngineNotAvailableError",
    "ItemError",
    "RunCancelledError",
    "RunResults",
    "RunStats",
    "RunStream",
    "SymaiConfigError",
    "SymbatcherError",
    "__version__",
]
