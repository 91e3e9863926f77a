"""RateLimit: keep a provider's requests-per-minute, tokens-per-minute and concurrency limits.

A call waits for capacity before it is sent: it books its slot on each limit (tokens are
estimated from the prepared request) and its worker sleeps, idle, until the slot comes;
afterwards the token booking is corrected by the usage the provider reported. Limits are
kept per engine and model: every (engine, model) pair a run calls gets its own limiters.

A 429 that comes anyway (the limit is lower than configured, or none was) teaches a
:class:`~symbatcher.limits.LearnedRate`: the pace is cut below the rate that got through and
probed upwards again, and nothing is sent before the ``Retry-After`` the server named. The
call itself is retried by :class:`~symbatcher.hooks.retry.CallRetry`, which this hook
brings along if the run lacks it.

Limits come from code (``RateLimit(rpm=3000)``) or from the environment
(``RateLimit.from_env()``: ``SYMBATCHER_RPM``, ``SYMBATCHER_TPM``,
``SYMBATCHER_MAX_CONCURRENCY``); all are off by default.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from symbatcher.checks import positive_int
from symbatcher.errors import RunCancelledError
from symbatcher.hooks.base import CallContext, Hook, RunContext
from symbatcher.hooks.retry import CallRetry, is_rate_limit, retry_after
from symbatcher.limits import LearnedRate, Pace, Slots
from symbatcher.pricing import usage_of

ENV_RPM = "SYMBATCHER_RPM"
ENV_TPM = "SYMBATCHER_TPM"
ENV_MAX_CONCURRENCY = "SYMBATCHER_MAX_CONCURRENCY"

_MESSAGE_OVERHEAD = 4  # tokens a chat template adds per message, roughly


def _text_of(prepared: Any) -> tuple[str, int]:
    """The prompt text of a prepared request and its number of messages."""
    if isinstance(prepared, str):
        return prepared, 1
    if isinstance(prepared, list):
        parts = []
        for message in prepared:
            content = message.get("content") if isinstance(message, Mapping) else message
            parts.append(content if isinstance(content, str) else json.dumps(content, default=str))
        return "\n".join(parts), len(prepared)
    return ("" if prepared is None else str(prepared)), 1


def estimate_prompt_tokens(engine: Any, argument: Any) -> int:
    """Prompt tokens of a prepared call: the engine's local tokenizer if it has one (no
    request is made for it), else ~4 characters a token plus a little per message."""
    prop = getattr(argument, "prop", None)
    text, messages = _text_of(getattr(prop, "prepared_input", None))
    tokenizer = getattr(engine, "tokenizer", None)
    encode: Callable[[str], Any] | None = getattr(tokenizer, "encode", None)
    if encode is not None:
        try:
            return len(encode(text)) + _MESSAGE_OVERHEAD * messages
        except Exception:
            pass
    return len(text) // 4 + _MESSAGE_OVERHEAD * messages


def requested_max_tokens(argument: Any) -> int | None:
    kwargs = getattr(argument, "kwargs", None) or {}
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = kwargs.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


class _Limiter:
    """The limits of one (engine, model)."""

    def __init__(self, hook: RateLimit) -> None:
        keep = 1.0 - hook.headroom
        self.rpm = Pace(hook.rpm * keep, hook.burst) if hook.rpm else None
        self.tpm = Pace(hook.tpm * keep, hook.burst) if hook.tpm else None
        self.learned = LearnedRate() if hook.adaptive else None
        self.slots = Slots(hook.max_concurrency) if hook.max_concurrency else None
        self.completion_mean = 0.0  # for calls that set no max_tokens
        self.completions = 0
        self.lock = threading.Lock()


class RateLimit(Hook):
    """Pace engine calls to ``rpm`` / ``tpm`` and at most ``max_concurrency`` at once.

    ``engine`` / ``model`` restrict it to matching calls (None: all). ``adaptive`` learns a
    lower limit from 429s. ``burst`` is how many seconds' worth may go at once: small, so
    calls go out evenly and the provider's own burst allowance absorbs network jitter.
    ``headroom`` keeps the pace that fraction below the limit. At exactly the limit the
    provider's bucket never refills: every stall of this process (calls booked apart then
    sent together) drains it for good, until a 429. Measured against the local server at
    3,000 RPM with 200 workers: headroom 0, one 429 in 2,000 calls; 0.02, three; 0.03,
    none in two runs (0.972 of the limit).
    """

    requires = (CallRetry,)

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        max_concurrency: int | None = None,
        engine: str | None = None,
        model: str | None = None,
        adaptive: bool = True,
        burst: float = 0.2,
        headroom: float = 0.03,
    ) -> None:
        super().__init__()
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if max_concurrency is not None:
            positive_int("max_concurrency", max_concurrency)
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.engine = engine
        self.model = model
        self.adaptive = adaptive
        self.burst = burst
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
        self.headroom = headroom
        self.rate_limited = 0  # 429s seen
        self.waited = 0.0  # seconds calls spent waiting for capacity
        self._limiters: dict[tuple[str, str | None], _Limiter] = {}
        self._lock = threading.Lock()
        self._run: RunContext | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> RateLimit:
        """Limits from ``SYMBATCHER_RPM``, ``SYMBATCHER_TPM``, ``SYMBATCHER_MAX_CONCURRENCY``."""
        env = os.environ if environ is None else environ

        def number(name: str, kind: Callable[[str], Any]) -> Any:
            raw = env.get(name, "").strip()
            if not raw:
                return None
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None

        return cls(
            rpm=number(ENV_RPM, float),
            tpm=number(ENV_TPM, float),
            max_concurrency=number(ENV_MAX_CONCURRENCY, int),
            **kwargs,
        )

    def on_start(self, run: RunContext) -> None:
        self._run = run
        run.on_stop(self._wake)

    def _wake(self) -> None:
        for limiter in list(self._limiters.values()):
            if limiter.slots is not None:
                limiter.slots.wake()

    # -------------------------------------------------------------------- calls
    def _limiter(self, call: CallContext) -> _Limiter | None:
        if self.engine is not None and call.engine_name != self.engine:
            return None
        kwargs = getattr(call.argument, "kwargs", None) or {}
        model = kwargs.get("model") or getattr(call.engine, "model", None)
        model = model if isinstance(model, str) else None
        if self.model is not None and model != self.model:
            return None
        key = (call.engine_name, model)
        limiter = self._limiters.get(key)
        if limiter is None:
            with self._lock:
                limiter = self._limiters.setdefault(key, _Limiter(self))
        return limiter

    def around_call(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        limiter = self._limiter(call)
        if limiter is None:
            return proceed()
        if limiter.slots is not None and not self._take_slot(limiter):
            raise RunCancelledError("the run was cancelled while the call waited for a slot")
        try:
            estimate = self._book(limiter, call)
            sent_at = time.monotonic()
            if limiter.learned is not None:
                limiter.learned.sent(sent_at)
            try:
                answer = proceed()
            except Exception as exc:
                if is_rate_limit(exc):
                    self._limited(limiter, exc, sent_at)
                raise
            if limiter.tpm is not None:
                self._settle(limiter, call, answer, estimate)
            return answer
        finally:
            if limiter.slots is not None:
                limiter.slots.release()

    def _take_slot(self, limiter: _Limiter) -> bool:
        assert limiter.slots is not None
        run = self._run
        if run is None:
            return limiter.slots.acquire()
        with run.idle():
            return limiter.slots.acquire(run.cancelled_event)

    def _book(self, limiter: _Limiter, call: CallContext) -> int:
        """Book the call on every limit; sleep until all have room. The token estimate."""
        now = time.monotonic()
        delay = 0.0
        estimate = 0
        if limiter.rpm is not None:
            delay = max(delay, limiter.rpm.reserve(1.0, now))
        if limiter.tpm is not None:
            completion = requested_max_tokens(call.argument)
            if completion is None:
                completion = round(limiter.completion_mean)
            estimate = estimate_prompt_tokens(call.engine, call.argument) + completion
            delay = max(delay, limiter.tpm.reserve(estimate, now))
        learned = limiter.learned.pace if limiter.learned is not None else None
        learned_go = now + limiter.learned.reserve(now) if limiter.learned is not None else now
        delay = max(delay, learned_go - now)
        since = now
        while delay > 0:
            self._sleep(delay)
            if learned is None or learned_go <= since:
                break
            # the learned rate may have been cut meanwhile: the wait stretches with it
            since, learned_go = learned_go, learned.rescheduled(learned_go, since)
            delay = learned_go - time.monotonic()
        return estimate

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            self.waited += seconds
        if self._run is None:
            time.sleep(seconds)
        elif not self._run.wait(seconds):
            raise RunCancelledError("the run was cancelled while the call waited")

    def _limited(self, limiter: _Limiter, exc: BaseException, sent_at: float) -> None:
        with self._lock:
            self.rate_limited += 1
        if limiter.learned is not None:
            limiter.learned.limited(sent_at)
        asked = retry_after(exc)
        if asked and limiter.learned is None:
            until = time.monotonic() + asked
            for pace in (limiter.rpm, limiter.tpm):
                if pace is not None:
                    pace.hold(until)

    def _settle(self, limiter: _Limiter, call: CallContext, answer: Any, estimate: int) -> None:
        assert limiter.tpm is not None
        metadata = answer[1] if isinstance(answer, tuple) and len(answer) == 2 else None
        usage = usage_of(call.engine, metadata)
        if usage is None:
            return
        limiter.tpm.adjust(usage.prompt_tokens + usage.completion_tokens - estimate)
        with limiter.lock:
            limiter.completions += 1
            limiter.completion_mean += (
                usage.completion_tokens - limiter.completion_mean
            ) / limiter.completions

    @property
    def learned_rpm(self) -> dict[tuple[str, str | None], float | None]:
        """The pace each (engine, model) settled on after 429s, requests per minute."""
        return {
            key: (limiter.learned.per_minute if limiter.learned is not None else None)
            for key, limiter in self._limiters.items()
        }
