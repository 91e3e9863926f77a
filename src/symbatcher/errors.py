"""Errors symbatcher raises itself; each names what went wrong and where."""

from __future__ import annotations

from collections.abc import Iterator


class SymbatcherError(Exception):
    """Base class of every error symbatcher raises itself."""


class SymaiConfigError(SymbatcherError):
    """symai could not start from its config file."""


class EngineNotAvailableError(SymbatcherError):
    """The engine a run should bind to is not registered or configured in symai."""


class BatchProtocolError(SymbatcherError):
    """A list-taking engine broke its protocol: a wrong-shaped answer, a bad declaration."""


class RunCancelledError(SymbatcherError):
    """The run this call belonged to was cancelled before the call got its answer."""


class ExpressionBuildError(SymbatcherError, TypeError):
    """The run's expression class could not be built (its ``__init__`` raised); no item
    started."""


class HaltingError(SymbatcherError):
    """What halts a run rather than failing an item (a model with no price under a
    budget): the items it reached are left pending, so a resume, with the cause put
    right, runs them, instead of leaving them failed for a retry."""


class DatasetError(SymbatcherError):
    """Iterating the dataset raised; the run stopped after the items already taken."""


class RunLockedError(SymbatcherError):
    """Another process holds the run directory."""


class RunMismatchError(SymbatcherError):
    """A resumed run was given another expression or dataset than the one it started with."""


class ServiceError(SymbatcherError):
    """The service cannot start (its address is taken, say); nothing has run."""


class StoreError(SymbatcherError):
    """The run store could not record state; the run stops rather than lose work."""


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class CommandError(SymbatcherError):
    """A command (or a service job) cannot start: the message says what to change."""
