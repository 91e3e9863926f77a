"""symbatcher: run symbolicai Expressions over large datasets with batched engine calls."""

from symbatcher.binding import EngineBinding
from symbatcher.carry import carry
from symbatcher.errors import (
    BatchProtocolError,
    DatasetError,
    EngineNotAvailableError,
    RunCancelledError,
    RunLockedError,
    RunMismatchError,
    StoreError,
    SymaiConfigError,
    SymbatcherError,
)
from symbatcher.hooks import (
    Backoff,
    Budget,
    CallRetry,
    Checkpoint,
    Cost,
    Hook,
    Progress,
    ProgressEvent,
    RateLimit,
    Retry,
    SaveResults,
)
from symbatcher.local import local_engine
from symbatcher.manager import BatchManager, ManagerStats
from symbatcher.results import ItemError, ItemPending, RunResults, RunStats
from symbatcher.scheduler import BatchScheduler, RunStream
from symbatcher.store import load_snapshot

__version__ = "0.8.1"

__all__ = [
    "Backoff",
    "BatchManager",
    "BatchProtocolError",
    "BatchScheduler",
    "Budget",
    "CallRetry",
    "Checkpoint",
    "Cost",
    "DatasetError",
    "EngineBinding",
    "EngineNotAvailableError",
    "Hook",
    "ItemError",
    "ItemPending",
    "ManagerStats",
    "Progress",
    "ProgressEvent",
    "RateLimit",
    "Retry",
    "RunCancelledError",
    "RunLockedError",
    "RunMismatchError",
    "RunResults",
    "RunStats",
    "RunStream",
    "SaveResults",
    "StoreError",
    "SymaiConfigError",
    "SymbatcherError",
    "__version__",
    "carry",
    "load_snapshot",
    "local_engine",
]
