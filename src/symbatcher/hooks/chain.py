"""The hooks of one run, composed: each point calls only the hooks that override it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from symbatcher.hooks.base import CallContext, CallRecord, Hook, ItemContext, Restored, RunContext

logger = logging.getLogger("symbatcher")

_current = threading.local()


def current_item() -> ItemContext | None:
    """The item the calling thread works on, if it is a run's worker inside an item."""
    item: ItemContext | None = getattr(_current, "item", None)
    return item


@contextmanager
def working_on(item: ItemContext) -> Iterator[None]:
    previous = current_item()
    _current.item = item
    try:
        yield
    finally:
        _current.item = previous


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


def _with_requirements(hooks: Iterable[Hook]) -> list[Hook]:
    """The hooks with every hook they require in front of them (outside, for the
    ``around_*`` wrappers): added if missing, moved forward if given later."""
    pending = list(hooks)
    result: list[Hook] = []
    while pending:
        hook = pending.pop(0)
        if not isinstance(hook, Hook):
            raise TypeError(f"hooks must be symbatcher Hook instances, got {type(hook).__name__}")
        for required in hook.requires:
            if any(isinstance(h, required) for h in result):
                continue
            at = next((i for i, h in enumerate(pending) if isinstance(h, required)), None)
            if at is not None:  # by position: hooks are Expressions, whose == is symbolic
                result.append(pending.pop(at))
            else:
                result.append(required())
        result.append(hook)
    return result


class HookChain:
    """Calls a run's hooks at each point, in order; the ``around_*`` wrappers nest."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        hooks = list(hooks)
        self.hooks = _with_requirements(hooks)
        self._restorers = [h for h in self.hooks if _overrides(h, "restore")]
        self._admitters = [h for h in self.hooks if _overrides(h, "admit")]
        self._item_wrappers = [h for h in self.hooks if _overrides(h, "around_item")]
        self._call_wrappers = [h for h in self.hooks if _overrides(h, "around_call")]
        self._done = [h for h in self.hooks if _overrides(h, "on_item_done")]
        self._starters = [h for h in self.hooks if _overrides(h, "on_item_start")]
        self._call_done = [h for h in self.hooks if _overrides(h, "on_call_done")]
        self._start_order = sorted(self.hooks, key=lambda h: h.start_order)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    @property
    def wraps_calls(self) -> bool:
        return bool(self._call_wrappers or self._call_done)

    @property
    def wraps_items(self) -> bool:
        return bool(self._item_wrappers)

    @property
    def restores(self) -> bool:
        return bool(self._restorers)

    def on_start(self, run: RunContext) -> None:
        started: list[Hook] = []
        try:
            for hook in self._start_order:
                hook.on_start(run)
                started.append(hook)
        except BaseException:
            run.status = "failed"
            for hook in reversed(started):
                try:
                    hook.on_end(run)
                except Exception:
                    logger.exception("hook %s failed while undoing its start", hook)
            raise

    def restore(self, item: ItemContext) -> Restored | None:
        for hook in self._restorers:
            restored = hook.restore(item)
            if restored is not None:
                return restored
        return None

    def admit(self, item: ItemContext) -> str | None:
        if item.run.stopped():  # a hook halted the run: no item starts after that
            return item.run.stop_reason or "the run is stopping"
        for hook in self._admitters:
            reason = hook.admit(item)
            if reason is not None:
                return reason
        return None

    def item_start(self, item: ItemContext) -> None:
        for hook in self._starters:
            hook.on_item_start(item)

    def wrap_item(self, item: ItemContext, proceed: Callable[[], Any]) -> Callable[[], Any]:
        """``proceed`` inside every ``around_item``, to call from the worker's own frame
        (see :class:`_Nested`)."""
        call = proceed
        for hook in reversed(self._item_wrappers):
            call = _Nested(hook.around_item, item, call)
        return call

    def run_call(
        self, engine_name: str, engine: Any, argument: Any, proceed: Callable[[], Any]
    ) -> Any:
        item = current_item()
        context = CallContext(engine_name, engine, argument, item, CallRecord(engine_name))
        call = proceed
        for hook in reversed(self._call_wrappers):
            call = _Nested(hook.around_call, context, call)
        try:
            return call()
        finally:
            if item is not None:
                item.calls.append(context.record)
                item.run.add_call(context.record)
            for hook in self._call_done:
                hook.on_call_done(context)

    def item_done(self, item: ItemContext, outcome: Any) -> list[Future[Any]]:
        """The futures hooks returned: the outcome waits for them before the caller sees it."""
        pending: list[Future[Any]] = []
        for hook in self._done:
            future = hook.on_item_done(item, outcome)
            if future is not None:
                pending.append(future)
        return pending

    def on_end(self, run: RunContext) -> None:
        """Every hook gets its ``on_end``, in reverse start order (the checkpoint last, after
        the hooks that read its store); the first error is raised after all ran."""
        first: BaseException | None = None
        for hook in reversed(self._start_order):
            try:
                hook.on_end(run)
            except BaseException as exc:
                if first is None:
                    first = exc
                else:
                    logger.exception("hook %s failed at the end of the run", hook)
        if first is not None:
            raise first


class _Nested:
    """``method(context, inner)`` as a callable whose frame holds one local: symai
    type-checks every local of every frame above an engine call, on every query."""

    __slots__ = ("context", "inner", "method")

    def __init__(
        self,
        method: Callable[[Any, Callable[[], Any]], Any],
        context: Any,
        inner: Callable[[], Any],
    ) -> None:
        self.method = method
        self.context = context
        self.inner = inner

    def __call__(self) -> Any:
        return self.method(self.context, self.inner)
