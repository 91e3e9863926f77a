"""Deterministic engines for tests, demos and benchmarks; no key, no network."""

from symbatcher.testing.engines import (
    LegacyBatchEngine,
    SimulatedBatchEngine,
    SimulatedEngine,
    SimulatedEngineError,
    use_engine,
)

__all__ = [
    "LegacyBatchEngine",
    "SimulatedBatchEngine",
    "SimulatedEngine",
    "SimulatedEngineError",
    "use_engine",
]
