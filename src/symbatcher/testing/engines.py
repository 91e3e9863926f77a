"""Simulated engines: real symai ``Engine`` subclasses whose network is a sleep.

Each answer is ``sim(<prompt>)``, the full prompt the call carried, so a test can prove an
answer reached the item that asked. Latency, failures and tracking are configurable and
deterministic (a seeded RNG), so the same settings give the same run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from symbatcher.checks import positive_int
from symbatcher.local import registered
from symbatcher.symai_setup import import_symai

import_symai()

from symai.backend.base import Engine  # noqa: E402

Latency = float | tuple[float, float] | Callable[[random.Random], float]
Match = str | Callable[[str], bool] | None


class SimulatedEngineError(RuntimeError):
    """An error a simulated engine was told to raise; ``status_code`` as an HTTP engine
    would report it (``fail_status``), which decides whether a retry is worth it."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


def _matches(rule: Match, prompt: str) -> bool:
    if rule is None:
        return False
    if isinstance(rule, str):
        return rule in prompt
    return bool(rule(prompt))


def prompt_of(argument: Any) -> str:
    """The text symai built for this call (what a real engine would send)."""
    prop = argument.prop
    prepared = getattr(prop, "prepared_input", None)
    if isinstance(prepared, str):
        return prepared
    return str(getattr(prop, "processed_input", ""))


class SimulatedEngine(Engine):  # type: ignore[misc]
    """A plain symai 2.x engine: one call at a time, ``latency`` seconds per call.

    ``latency`` is seconds, a ``(low, high)`` uniform range, or ``f(rng) -> seconds``.
    ``fail_every=k`` fails every k-th call; ``fail_on`` fails calls whose prompt contains a
    string (or satisfies a predicate); with ``fail_times=k`` a matching prompt fails only
    its first k calls (a transient fault). ``fail_status`` gives injected errors an HTTP
    ``status_code``. ``calls`` lists every prompt received, in order (``record_calls=False``
    keeps only the count, for long runs).
    """

    def __init__(
        self,
        latency: Latency = 0.0,
        *,
        seed: int = 0,
        fail_every: int | None = None,
        fail_on: Match = None,
        model: str = "simulated",
        record_calls: bool = True,
        fail_times: int | None = None,
        fail_status: int | None = None,
    ) -> None:
        super().__init__()
        self.fail_times = fail_times
        self.fail_status = fail_status
        self._failures: dict[str, int] = {}
        self.record_calls = record_calls
        self._count = 0
        self.latency = latency
        self.fail_every = fail_every
        self.fail_on = fail_on
        self.model = model
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: list[str] = []
        self.batches: list[int] = []
        self._batch_count = 0
        self.concurrency = 0
        self.max_concurrency = 0

    def id(self) -> str:
        return "neurosymbolic"

    def prepare(self, argument: Any) -> None:
        argument.prop.prepared_input = str(argument.prop.processed_input)

    @property
    def call_count(self) -> int:
        return self._count

    def reset(self) -> None:
        with self._lock:
            self._count = 0
            self._batch_count = 0
            self.calls.clear()
            self.batches.clear()
            self.max_concurrency = 0

    # ------------------------------------------------------------------ serving
    def forward(self, argument: Any) -> tuple[list[str], dict[str, Any]]:
        prompt = prompt_of(argument)
        number = self._enter([prompt])[0][0]
        try:
            self._wait()
            self._maybe_fail(prompt, number)
            return self.answer(prompt)
        finally:
            self._leave()

    def answer(self, prompt: str) -> tuple[list[str], dict[str, Any]]:
        text = f"sim({prompt})"
        prompt_tokens = max(1, len(prompt) // 4)
        completion_tokens = max(1, len(text) // 4)
        metadata = {
            "model": self.model,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return [text], metadata

    def _enter(self, prompts: Sequence[str]) -> tuple[list[int], int]:
        """Record the calls; their numbers (from 1) and the batch's number."""
        with self._lock:
            first = self._count + 1
            self._count += len(prompts)
            if self.record_calls:
                self.calls.extend(prompts)
                self.batches.append(len(prompts))
            self._batch_count += 1
            self.concurrency += 1
            self.max_concurrency = max(self.max_concurrency, self.concurrency)
            return list(range(first, first + len(prompts))), self._batch_count

    def _leave(self) -> None:
        with self._lock:
            self.concurrency -= 1

    def _delay(self) -> float:
        if callable(self.latency):
            with self._lock:
                return float(self.latency(self._rng))
        if isinstance(self.latency, tuple):
            low, high = self.latency
            with self._lock:
                return self._rng.uniform(low, high)
        return float(self.latency)

    def _wait(self) -> None:
        delay = self._delay()
        if delay > 0:
            time.sleep(delay)  # the simulated network round trip

    def _maybe_fail(self, prompt: str, number: int) -> None:
        failure = self._failure(prompt, number)
        if failure is not None:
            raise failure

    def _failure(self, prompt: str, number: int) -> SimulatedEngineError | None:
        """The injected error for this call, if any: built, not raised, so a batch can
        return it in the call's slot without a traceback that reaches the batch's list."""
        if self.fail_every and number % self.fail_every == 0:
            return SimulatedEngineError(
                f"injected failure on call {number} (every {self.fail_every})", self.fail_status
            )
        if _matches(self.fail_on, prompt):
            if self.fail_times is not None:
                with self._lock:
                    seen = self._failures.get(prompt, 0)
                    if seen >= self.fail_times:
                        return None
                    self._failures[prompt] = seen + 1
            return SimulatedEngineError(
                f"injected failure on call {number}: prompt matched", self.fail_status
            )
        return None


class SimulatedBatchEngine(SimulatedEngine):
    """A list-taking engine (symbatcher's ``forward_batch`` protocol): latency per batch.

    Besides the per-call failures of :class:`SimulatedEngine` (returned in the failing
    call's slot), ``fail_batch_on`` / ``fail_batch_every`` make the whole batch raise.
    ``batches`` lists the size of every batch received. ``capacity=k`` models a server that
    serves k batches at once (a model on a GPU): further batches wait at the engine for a
    free slot, and the engine declares it (``max_concurrent_batches``), so a run that is
    given no cap of its own sends no more. ``max_concurrency`` counts the batches sent to
    it at once, waiting ones included.
    """

    def __init__(
        self,
        latency: Latency = 0.0,
        *,
        fail_batch_on: Match = None,
        fail_batch_every: int | None = None,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(latency, **kwargs)
        self.fail_batch_on = fail_batch_on
        self.fail_batch_every = fail_batch_every
        if capacity is not None:
            positive_int("capacity", capacity)
        self.max_concurrent_batches = capacity
        self._slots: AbstractContextManager[Any] = (
            nullcontext() if capacity is None else threading.BoundedSemaphore(capacity)
        )

    def forward_batch(
        self, arguments: Sequence[Any]
    ) -> list[tuple[list[str], dict[str, Any]] | BaseException]:
        prompts = [prompt_of(a) for a in arguments]
        numbers, batch_number = self._enter(prompts)
        try:
            with self._slots:
                self._wait()
            if self.fail_batch_every and batch_number % self.fail_batch_every == 0:
                raise SimulatedEngineError(f"injected failure of batch {batch_number}")
            if any(_matches(self.fail_batch_on, p) for p in prompts):
                raise SimulatedEngineError(
                    f"injected failure of batch {batch_number}: a prompt matched"
                )
            return [
                failure if (failure := self._failure(prompt, number)) else self.answer(prompt)
                for prompt, number in zip(prompts, numbers, strict=True)
            ]
        finally:
            self._leave()


class LegacyBatchEngine:
    """A symai 1.x-style batch engine: ``allows_batching = True``, ``engine(list)``.

    Answers ``(text, metadata)`` per argument with the text not wrapped in a list, and a
    failing call's exception in its result slot -- as 1.x ``BatchEngine`` subclasses did.
    """

    allows_batching = True

    def __init__(self, inner: SimulatedBatchEngine | None = None) -> None:
        self.inner = inner or SimulatedBatchEngine()

    def id(self) -> str:
        return "neurosymbolic"

    def prepare(self, argument: Any) -> None:
        self.inner.prepare(argument)

    def __call__(self, arguments: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        legacy: list[tuple[Any, dict[str, Any]]] = []
        for outcome in self.inner.forward_batch(arguments):
            if isinstance(outcome, BaseException):
                legacy.append((outcome, {}))
            else:
                legacy.append((outcome[0][0], outcome[1]))
        return legacy


def use_engine(engine: Any, name: str = "neurosymbolic") -> AbstractContextManager[Any]:
    """Register ``engine`` under ``name`` in symai for the block; put back what was there."""
    return registered(engine, (name,))
