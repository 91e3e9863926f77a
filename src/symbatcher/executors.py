"""How a released batch reaches an engine: one list call, or each call in its own worker.

Two engine shapes exist:

* a plain symai 2.x engine (``engine(argument) -> (outputs, metadata)``) serves one call at a
  time. The members of a batch run concurrently, each in the worker thread that made the
  call: the run's workers already are the thread pool, so nothing is handed to another
  thread and the engine runs in the thread (and context) symai expects.
* a list-taking engine gets the whole batch in one call, run by the batch's first member.
  symbatcher's protocol is ``forward_batch(arguments) -> list[(outputs, metadata) | Exception]``;
  symai 1.x batch engines (``allows_batching = True``; ``engine(arguments)``) work too.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any, Protocol

from symbatcher.batch_slots import BatchSlots
from symbatcher.errors import BatchProtocolError

Answer = tuple[list[Any], dict[str, Any]]
Outcome = Answer | BaseException


def answer_of(outcome: Outcome) -> Answer:
    """The answer, or the error raised in the calling thread.

    The raising frame must not keep the error: it would sit in the error's own traceback,
    a reference cycle (error -> traceback -> frame -> error) that only the cyclic GC frees,
    and each collection stalls every worker of a run. ``concurrent.futures`` does the same.
    """
    if isinstance(outcome, BaseException):
        try:
            raise outcome
        finally:
            del outcome
    return outcome


class Executor(Protocol):
    """What dispatch needs to know about an engine."""

    #: True when each call of a batch runs in its own caller's thread.
    caller_runs: bool
    #: the engine's own limit on batches out at once, shared by every run in the process
    slots: BatchSlots | None

    def call_one(self, argument: Any) -> Answer:
        """Answer one call; used by callers that run their own call, and outside runs."""
        ...

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        """Answer a batch: one outcome per argument, in order."""
        ...


def is_list_taking(engine: Any) -> bool:
    return callable(getattr(engine, "forward_batch", None)) or (
        getattr(engine, "allows_batching", False) is True
    )


#: The list-taking protocol's optional attribute: how many batches the engine serves at once.
CAPACITY_ATTRIBUTE = "max_concurrent_batches"


def declared_capacity(engine: Any) -> int | None:
    """How many batches a list-taking engine says it serves at once (None: any number).

    A GPU server or a provider that counts requests serves a few batches at a time; a run
    that sends more only queues them there, each holding calls that could have filled a
    batch. A plain engine's batches are only units of an in-flight cap, so it declares none.
    Read once, when the engine is bound (its executor holds the slots).
    """
    if not is_list_taking(engine):
        return None
    value = getattr(engine, CAPACITY_ATTRIBUTE, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = (
            f"{type(engine).__qualname__}.{CAPACITY_ATTRIBUTE} must be a positive integer "
            f"or None, got {value!r}"
        )
        raise BatchProtocolError(msg)
    return value


def executor_for(engine: Any) -> Executor:
    return ListExecutor(engine) if is_list_taking(engine) else PlainExecutor(engine)


class PlainExecutor:
    caller_runs = True
    slots: BatchSlots | None = None  # its batches are only units of a run's cap

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def call_one(self, argument: Any) -> Answer:
        result: Answer = self.engine(argument)
        return result

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for argument in arguments:
            try:
                outcomes.append(self.call_one(argument))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


class ListExecutor:
    caller_runs = False

    def __init__(self, engine: Any) -> None:
        from symai.backend.base import Engine

        self.engine = engine
        capacity = declared_capacity(engine)
        self.slots: BatchSlots | None = None if capacity is None else BatchSlots(capacity)
        self._native = callable(getattr(engine, "forward_batch", None))
        # symai 2.x engines run input/output handlers in Engine.__call__; we call them here
        self._handlers = isinstance(engine, Engine)

    def call_one(self, argument: Any) -> Answer:
        return answer_of(self.call_batch([argument])[0])

    def call_batch(self, arguments: Sequence[Any]) -> list[Outcome]:
        """Whole-batch exceptions propagate; the dispatcher hands one to each member."""
        started = time.time()
        if self._handlers:
            for argument in arguments:
                self.engine._trigger_input_handlers(argument)
        if self._native:
            raw = self.engine.forward_batch(list(arguments))
        else:
            raw = self.engine(list(arguments))
        outcomes = normalize_batch(self.engine, raw, len(arguments))
        elapsed = time.time() - started
        for argument, outcome in zip(arguments, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                outcome[1].setdefault("time", elapsed)
                if self._handlers:
                    self.engine._trigger_output_handlers(argument, *outcome)
        return outcomes


def normalize_batch(engine: Any, raw: Any, expected: int) -> list[Outcome]:
    """Check a list engine's answer and bring each entry to symai's ``(list, dict)`` shape."""
    name = type(engine).__qualname__
    if not isinstance(raw, list | tuple):
        msg = f"{name} answered a batch of {expected} with {type(raw).__name__}, expected a list"
        raise BatchProtocolError(msg)
    if len(raw) != expected:
        msg = f"{name} answered a batch of {expected} calls with {len(raw)} results"
        raise BatchProtocolError(msg)
    outcomes: list[Outcome] = []
    for position, entry in enumerate(raw):
        if isinstance(entry, BaseException):
            outcomes.append(entry)
            continue
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            msg = (
                f"{name} answered call {position} of a batch with {entry!r:.80}; "
                f"expected (outputs, metadata) or an exception"
            )
            raise BatchProtocolError(msg)
        outputs, metadata = entry
        if isinstance(outputs, BaseException):  # symai 1.x puts errors in the result slot
            outcomes.append(outputs)
            continue
        outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        outcomes.append((outputs, dict(metadata) if metadata else {}))
    return outcomes


def exception_for_member(exc: BaseException) -> BaseException:
    """A copy of a whole-batch exception, so no two threads raise the same object."""
    try:
        clone = copy.copy(exc)
    except Exception:
        return exc
    if type(clone) is not type(exc):
        return exc
    clone.__traceback__ = None
    clone.__cause__ = exc
    return clone
