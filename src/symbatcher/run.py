"""One run's life: a bounded window over the dataset, item workers, outcomes as completed.

Workers pull the next item from the dataset under a lock, so a generator is consumed
lazily; a semaphore caps the items taken but not yet handed to the consumer (``window``),
so memory does not grow with the dataset. Outcomes travel to the consumer through a queue,
or, in collect mode (an ordered list for ``forward``), straight into a dict by index with no
window, since the whole result is held anyway.
Closing the run -- normally, on error, on ``fail_fast``, on Ctrl-C or when the consumer
stops early -- cancels what is waiting, joins every thread it started and unbinds the
engines.

Hooks (:mod:`symbatcher.hooks`) see the run through a :class:`RunContext`: they start
before the first worker, may restore an item from an earlier run as it is taken (in
dataset order, under the source lock), may refuse to start items (a budget), wrap each
item and each engine call, and see each outcome before the caller does; an outcome whose
hooks returned futures (the checkpoint's commit) is handed on when they complete, while its
worker goes on with the next item.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, Literal, cast

from symbatcher.binding import RunRoute, bound_engines, routed_to
from symbatcher.dispatch import Dispatcher
from symbatcher.engine_lookup import dynamic_engines_routed, own_engines_routed
from symbatcher.errors import DatasetError, HaltingError, RunCancelledError, error_chain
from symbatcher.hooks.base import ItemContext, Restored, RunContext
from symbatcher.hooks.chain import HookChain, working_on
from symbatcher.http_clients import (
    block_client_per_thread,
    client_per_thread,
    close_thread_clients,
)
from symbatcher.interrupts import ctrl_c_held, receive, wait_until
from symbatcher.pricing import model_of
from symbatcher.results import ItemError, ItemPending, RunStats
from symbatcher.templates import cached_templates

logger = logging.getLogger("symbatcher")

ErrorHandling = Literal["continue", "fail_fast"]
_WORKER_EXIT = object()
_run_numbers = itertools.count(1)


class _Backlog:
    """A worker's one outcome waiting for hooks' futures (its commit) before it is handed
    on: the worker goes on meanwhile, but waits before it leaves one more behind.

    A plain lock held while an outcome is outstanding: taking it waits for the previous
    one, the commit's callback releases it (from another thread, which a lock allows).
    """

    __slots__ = ("held", "waiting")

    def __init__(self) -> None:
        self.held = threading.Lock()
        self.waiting: list[Future[Any]] = []  # the outstanding outcome's futures

    def add(self, futures: list[Future[Any]], idle: Callable[[], Any]) -> None:
        """Wait until the previous outcome was handed on (marked idle meanwhile), then
        hold this one's futures."""
        if not self.held.acquire(blocking=False):
            self.hurry()
            with idle():
                self.held.acquire()
        self.waiting = futures

    def done(self) -> None:
        self.waiting = []
        self.held.release()

    def drain(self) -> None:
        if self.held.locked():
            self.hurry()
        with self.held:
            pass

    def hurry(self) -> None:
        """Ask what the outstanding outcome waits for to complete now (a store's gathered
        commit); a future offers that with an ``expedite()`` method."""
        for future in self.waiting:
            expedite = getattr(future, "expedite", None)
            if expedite is not None and not future.done():
                expedite()


def _when_all(futures: list[Future[Any]]) -> Future[Any]:
    """A future that completes when all of ``futures`` have (with the first error)."""
    combined: Future[Any] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one(_: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            combined.set_exception(errors[0])
        else:
            combined.set_result(None)

    for future in futures:
        future.add_done_callback(one)
    return combined


class Run:
    """Runs ``make_expr()(input=item, **call_kwargs)`` for every item of ``dataset``."""

    def __init__(
        self,
        make_expr: Callable[[int], Any],
        dataset: Iterable[Any],
        *,
        setup: Callable[[], Callable[[], None]] | None = None,
        num_workers: int,
        batch_size: int,
        call_kwargs: dict[str, Any],
        engines: tuple[str, ...],
        own_engines: Mapping[str, Any] | None = None,
        linger: float,
        linger_fraction: float | None,
        max_inflight_batches: int | None,
        window: int,
        error_handling: ErrorHandling,
        cache_templates: bool = False,
        client_per_thread: bool = False,
        fast_lookup: bool = False,
        hooks: HookChain | None = None,
        context: dict[str, Any] | None = None,
        indexed: bool = False,
    ) -> None:
        self._make_expr = make_expr
        self._dataset = dataset
        self._indexed = indexed  # the dataset yields (index, item): a rerun of chosen items
        self._hooks = hooks if hooks else None
        self._context_args = context or {}
        self.context: RunContext | None = None
        self._hooks_started = False
        self._restored = 0
        self._pending = 0
        self._interrupted = False
        self._setup = setup
        self._source = iter(dataset)
        self._num_workers = num_workers
        self._call_kwargs = call_kwargs
        self._engines = engines
        self._own_engines = dict(own_engines or {})  # by name: engines the run brought
        self._error_handling = error_handling
        self._cache_templates = cache_templates
        self._client_per_thread = client_per_thread
        self._fast_lookup = fast_lookup
        self._name = f"symbatcher-run{next(_run_numbers)}"
        self._batch_size = batch_size
        self._linger = linger
        self._linger_fraction = linger_fraction
        self._max_inflight = max_inflight_batches
        self._cap_shown = max_inflight_batches  # or, when none is given, the engine's
        self._window = threading.Semaphore(window)
        self._source_lock = threading.Lock()
        self._next_index = 0
        self._exhausted = False
        self._stopping = False
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._collected: dict[int, Any] | None = None  # set by collect(): workers fill it
        self._failure: BaseException | None = None
        self._failure_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._live = 0  # workers whose thread has not finished (and the starter, starting)
        self._all_left = threading.Event()  # set whenever _live is 0
        self._all_left.set()
        self._last_out_unbinds = False  # closed before they finished: the last one unbinds
        self._exit_lock = threading.Lock()
        self._dispatcher: Dispatcher | None = None
        self._binding: contextlib.ExitStack | None = None
        self._started_at = 0.0
        self._ended_at: float | None = None
        self._handed_out = 0  # outcomes passed to the consumer (streaming)
        self._failed = 0
        self._count_lock = threading.Lock()
        self._closed = False
        self._cancelled_early = False

    # ------------------------------------------------------------------ figures
    @property
    def stats(self) -> RunStats:
        d = self._dispatcher
        end = self._ended_at if self._ended_at is not None else time.perf_counter()
        items = len(self._collected) if self._collected is not None else self._handed_out
        ctx = self.context
        return RunStats(
            items=items,
            succeeded=items - self._failed - self._pending,
            failed=self._failed,
            pending=self._pending,
            restored=self._restored,
            tokens=ctx.tokens if ctx else 0,
            cost=ctx.spent if ctx else 0.0,
            status=self.status,
            stop_reason=ctx.stop_reason if ctx else None,
            models=ctx.models_by_cost() if ctx else {},
            engine_calls=d.engine_calls if d else 0,
            plain_calls=d.plain_calls if d else 0,
            retried_calls=ctx.retried_calls if ctx else 0,
            batches=d.batches - d.plain_batches if d else 0,
            batch_size=self._batch_size,
            max_inflight_batches=self._cap_shown,
            wall_time=(end - self._started_at) if self._started_at else 0.0,
        )

    @property
    def status(self) -> str:
        """running, completed, failed, budget_reached, cancelled or interrupted."""
        if self.context is not None and self.context.status != "running":
            return self.context.status
        if self._ended_at is None:
            return "running" if self._started_at else "new"
        return self._final_status()

    def _final_status(self) -> str:
        if self._interrupted:
            return "interrupted"
        if self._failure is not None:
            return "failed"
        if self._cancelled_early:
            return "cancelled"
        return "completed"

    @property
    def collected(self) -> dict[int, Any]:
        """What :meth:`collect` has gathered so far (empty when streaming)."""
        return self._collected if self._collected is not None else {}

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._started_at = time.perf_counter()
        stack = contextlib.ExitStack()
        self._binding = stack
        try:
            with ctrl_c_held():  # symai's state is changed whole or not at all
                bindings = stack.enter_context(bound_engines(self._engines, self._own_engines))
                if self._own_engines:  # symai's lookup hands them to this run's threads
                    stack.enter_context(own_engines_routed())
                if self._cache_templates:  # after binding: the engines have loaded prompts
                    stack.enter_context(cached_templates())
                if self._client_per_thread:
                    engines = {id(b.engine): b.engine for b in bindings.values()}.values()
                    stack.enter_context(client_per_thread.held(*engines))
                stack.enter_context(dynamic_engines_routed(fast=self._fast_lookup))
            model = model_of(bindings[self._engines[0]].engine, None)  # vLLM: the served id
            if isinstance(model, str):
                self._context_args.setdefault("model", model)
            if self._setup is not None:
                stack.callback(self._setup())
            if self._max_inflight is None:  # shown in the figures: the engine's own cap
                slots = bindings[self._engines[0]].executor.slots
                self._cap_shown = None if slots is None else slots.capacity
            self._dispatcher = Dispatcher(
                self._batch_size,
                self._linger,
                self._max_inflight,
                linger_fraction=self._linger_fraction,
            )
            if self._hooks is not None:
                self._start_hooks(self._dispatcher, {n: b.engine for n, b in bindings.items()})
            blocks = (block_client_per_thread,) if self._client_per_thread else ()
            own = {name: bindings[name] for name in self._own_engines}
            route = RunRoute(self._dispatcher, frozenset(self._engines), self._hooks, blocks, own)
            with ctrl_c_held():  # a thread half started would be miscounted
                self._start_workers(route)
        except BaseException:
            self.close()
            raise

    def _start_workers(self, route: RunRoute) -> None:
        """Start every worker; ``_all_left`` cannot be set before the last has started (this
        thread counts as one until then), though early ones may have finished already."""
        with self._exit_lock:
            self._live += 1
            self._all_left.clear()
        try:
            for number in range(self._num_workers):
                thread = threading.Thread(
                    target=_Worker(self, route, number),
                    name=f"{self._name}-worker{number}",
                    daemon=True,
                )
                with self._exit_lock:
                    self._live += 1
                try:
                    thread.start()
                except BaseException:  # the system refused a thread: it never ran
                    self._worker_left()
                    raise
                self._threads.append(thread)
        finally:
            self._worker_left()

    def _start_hooks(self, dispatcher: Dispatcher, engines: dict[str, Any]) -> None:
        assert self._hooks is not None

        @contextlib.contextmanager
        def idle() -> Iterator[None]:
            dispatcher.worker_idle()
            try:
                yield
            finally:
                dispatcher.worker_busy()

        args = dict(self._context_args)
        total = args.pop("total", None)
        if total is None and not self._indexed and hasattr(self._dataset, "__len__"):
            with contextlib.suppress(TypeError):
                total = len(self._dataset)  # type: ignore[arg-type]
        self.context = RunContext(
            dataset=self._dataset,
            total=total,
            num_workers=self._num_workers,
            idle=idle,
            replay_restored=args.pop("replay_restored", True),
            expression_fingerprint=args.pop("expression_fingerprint", ""),
            expression_settings=args.pop("expression_settings", None),
            model=args.pop("model", None),
            items_per_job=args.pop("items_per_job", None),
            indexed=self._indexed,
            engines=engines,
        )
        self._hooks.on_start(self.context)
        self._hooks_started = True

    def collect(self) -> dict[int, Any]:
        """Run to the end and return every outcome by index; the run closes at the end.

        Workers store outcomes directly and no window applies (everything is kept anyway),
        so the caller's thread sleeps until the workers are done instead of waking per item.
        """
        self._collected = {}
        self.start()
        with self._closing():
            self._wait_workers()
        return self._collected

    def outcomes(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, value or ItemError)`` as items finish; the run closes at the end."""
        self.start()
        with self._closing():
            running = len(self._threads)
            while running:
                message = receive(self._outbox)
                if message is _WORKER_EXIT:
                    running -= 1
                    continue
                index, outcome, restored = message
                self._window.release()
                self._handed_out += 1
                if restored or isinstance(outcome, ItemError | ItemPending):
                    self._count(outcome, restored)
                if self._failure is not None and self._error_handling == "fail_fast":
                    break
                yield index, outcome

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        """The one way out of a run: it closes whatever happened; Ctrl-C marks it
        interrupted; a run that failed raises its first failure afterwards."""
        try:
            yield
        except KeyboardInterrupt:
            self._interrupted = True
            raise
        finally:
            self.close()
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Cancel what has not finished, join every thread, unbind the engines. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started_at and not (self._exhausted or self._stopping or self._failure):
            self._cancelled_early = True  # the consumer stopped before the end
        try:
            with ctrl_c_held():  # every worker is told, even on a second Ctrl-C
                self._stop()
            self._wait_workers()  # a second Ctrl-C here leaves them to finish
        except BaseException:
            self._interrupted = True
            raise
        finally:
            self._ended_at = time.perf_counter()
            try:
                self._end_hooks()
            finally:
                # Workers left running by a second Ctrl-C still have calls out at the
                # engine; unbound now, their items' next calls would go straight to it
                # (billed, unpaced, answers thrown away). The binding refuses them
                # instead, and the last worker out unbinds.
                with self._exit_lock:
                    self._last_out_unbinds = self._live > 0
                if not self._last_out_unbinds:
                    with ctrl_c_held():
                        self._unbind()

    def _wait_workers(self) -> None:
        """Sleep until every worker has left, then join their threads.

        Waiting is on an event, not ``Thread.join``: on Python 3.11 a join interrupted by
        Ctrl-C marks the thread as stopped while it still runs (CPython gh-90882), so every
        later join returns at once and the run would unbind under its running workers.
        The joins after the event only see threads that are on their way out.
        """
        wait_until(self._all_left)
        for thread in self._threads:
            thread.join()

    def _worker_left(self) -> None:
        with self._exit_lock:
            self._live -= 1
            if self._live:
                return
            self._all_left.set()
            last_out_unbinds = self._last_out_unbinds
        if last_out_unbinds:
            self._unbind()

    def _unbind(self) -> None:
        binding, self._binding = self._binding, None
        if binding is not None:
            binding.close()

    def _end_hooks(self) -> None:
        if self.context is None or self._hooks is None or not self._hooks_started:
            return
        self._hooks_started = False
        if self.context.status == "running":
            self.context.status = self._final_status()
        self._hooks.on_end(self.context)

    # ------------------------------------------------------------------ workers
    def _stop(self, reason: BaseException | None = None) -> None:
        self._stopping = True
        if self.context is not None:
            self.context.cancel()
        if self._dispatcher is not None:
            self._dispatcher.cancel(reason)
        for _ in range(self._num_workers):
            self._window.release()

    def _fail(self, error: BaseException, *, cancel: bool) -> None:
        with self._failure_lock:
            if self._failure is None:
                self._failure = error
        if cancel:
            self._stop(error)

    def _take(self, dispatcher: Dispatcher, busy: bool) -> tuple[int, Any] | None:
        """The next item and its index, or None when there is nothing more to do.

        A worker stays counted busy from one item to the next when the next is at hand;
        it reports itself idle only before it blocks on the window or leaves.
        """
        windowed = self._collected is None
        while True:
            if windowed and not self._window.acquire(blocking=False):
                if busy:
                    dispatcher.worker_idle()
                    busy = False
                self._window.acquire()
            with self._source_lock:
                taken = self._next_item()
            if taken is None or not isinstance(taken[1], Restored):
                break
            index, restored = taken  # only replayed ones come here (see _next_item)
            self._deliver(index, restored.outcome, restored=True)
        if taken is None:
            if windowed:
                self._window.release()
            if busy:
                dispatcher.worker_idle()
        elif not busy:
            dispatcher.worker_busy()
        return taken

    def _deliver(self, index: int, outcome: Any, restored: bool = False) -> None:
        collected = self._collected
        if collected is None:
            self._outbox.put((index, outcome, restored))
            return
        collected[index] = outcome
        if restored or isinstance(outcome, ItemError | ItemPending):
            self._count(outcome, restored)

    def _count(self, outcome: Any, restored: bool) -> None:
        with self._count_lock:
            if restored:
                self._restored += 1
            if isinstance(outcome, ItemError):
                self._failed += 1
            elif isinstance(outcome, ItemPending):
                self._pending += 1

    def _next_item(self) -> tuple[int, Any] | None:
        """Called under the source lock. Items restored from an earlier run come back as
        ``(index, Restored)``, or are skipped here when their outcomes are not replayed."""
        restores = (
            self._hooks is not None
            and self._hooks.restores
            and self.context is not None
            and self.context.restorable
        )
        while not (self._stopping or self._exhausted):
            index = self._next_index
            try:
                item = next(self._source)
                if self._indexed:
                    index, item = item
            except StopIteration:
                self._exhausted = True
                return None
            except Exception as exc:
                self._exhausted = True
                error = DatasetError(
                    f"iterating the dataset raised {type(exc).__name__} at item {index}: {exc}"
                )
                error.__cause__ = exc
                self._fail(error, cancel=False)
                return None
            self._next_index += 1
            if not restores:
                return index, item
            assert self._hooks is not None and self.context is not None
            try:
                restored = self._hooks.restore(ItemContext(index, item, self.context))
            except Exception as exc:  # e.g. the dataset changed under a resumed run
                self._exhausted = True
                self._fail(exc, cancel=False)
                return None
            if restored is None:
                return index, item
            if self.context.replay_restored:
                return index, restored
        return None

    def _item_failed(self, index: int, exc: BaseException) -> ItemError | ItemPending:
        """The item's error slot; ``fail_fast`` also stops the run. An item cut short by a
        stop (a KeyboardInterrupt or the like in it, which stops the run and is raised; or
        a call the stopping run refused: Ctrl-C, fail_fast, the consumer leaving) did not
        fail: it is pending, and a resume runs it again."""
        if not isinstance(exc, Exception):
            self._fail(exc, cancel=True)
            return ItemPending(index, f"the run stopped ({type(exc).__name__}) in the item")
        if self._dispatcher is not None and self._dispatcher.cancelled and _cut_short(exc):
            return ItemPending(index, "the run stopped before the item finished")
        if self.context is not None and self.context.stopped() and _halted_by(exc):
            return ItemPending(index, f"the run halted: {exc}")
        outcome = ItemError.from_exception(index, exc)
        if self._error_handling == "fail_fast" and not self._stopping:
            exc.add_note(f"symbatcher: raised by item {index}; run cancelled")
            self._fail(exc, cancel=True)
        return outcome

    def _durable(self, index: int, outcome: Any, done: Future[Any], backlog: _Backlog) -> None:
        try:
            error = done.exception()
            if error is not None:
                logger.error("symbatcher: item %d could not be recorded; stopping the run", index)
                self._fail(error, cancel=True)
            self._deliver(index, outcome)
        finally:
            backlog.done()


class _Worker:
    """One worker thread of a run: takes items and runs the expression on each.

    Its state lives on this object, not in local variables, and the frames under the
    expression each hold just ``self``: on every query symai walks all frames of the
    calling thread and type-checks each of their locals (looking for a DynamicEngine), a
    few microseconds per local, per query.
    """

    __slots__ = ("backlog", "context", "expr", "index", "item", "number", "outcome", "route", "run")

    def __init__(self, run: Run, route: RunRoute, number: int) -> None:
        self.run = run
        self.route = route
        self.number = number
        self.backlog = _Backlog()
        self.expr: Any = None
        self.index = 0
        self.item: Any = None
        self.outcome: Any = None
        self.context: ItemContext | None = None

    def __call__(self) -> None:
        try:
            with routed_to(self.route):
                try:
                    self.expr = self.run._make_expr(self.number)
                except Exception as exc:
                    self.run._fail(exc, cancel=True)
                    return
                if self._take(busy=False):
                    while True:
                        if self.run._hooks is not None:
                            self._run_hooked()
                        else:
                            try:
                                self.outcome = self.expr(input=self.item, **self.run._call_kwargs)
                            except BaseException as exc:
                                self.outcome = self.run._item_failed(self.index, exc)
                            self.run._deliver(self.index, self.outcome)
                        self.outcome = self.item = None
                        if not self._take(busy=True):
                            break
        finally:
            close_thread_clients()
            self.backlog.drain()  # this worker's outcomes are handed on before it says it left
            if self.run._collected is None:
                self.run._outbox.put(_WORKER_EXIT)
            self.run._worker_left()

    def _take(self, *, busy: bool) -> bool:
        taken = self.run._take(self.route.dispatcher, busy)
        if taken is None:
            return False
        self.index, self.item = taken
        return True

    def _run_hooked(self) -> None:
        """One item with the hooks around it."""
        if not self._begin_item():
            return
        # no assert here: pytest rewrites this package's asserts into locals during tests
        try:
            with working_on(cast(ItemContext, self.context)):
                if self.run._hooks is not None and self.run._hooks.wraps_items:
                    self.outcome = self.run._hooks.wrap_item(
                        cast(ItemContext, self.context),
                        functools.partial(self.expr, input=self.item, **self.run._call_kwargs),
                    )()
                else:
                    self.outcome = self.expr(input=self.item, **self.run._call_kwargs)
        except BaseException as exc:
            self.outcome = self.run._item_failed(self.index, exc)
        self._item_done()

    def _begin_item(self) -> bool:
        """Admit and start the item; False if it is not to run. A hook failing outside the
        item (the store cannot write) stops the run: going on would lose what it could not
        record."""
        run = self.run
        hooks, ctx = run._hooks, run.context
        assert hooks is not None and ctx is not None
        index = self.index
        context = ItemContext(index, self.item, ctx)
        try:
            reason = hooks.admit(context)
            if reason is not None:
                run._stopping = True  # no new items; those in flight finish
                run._deliver(index, ItemPending(index, reason))
                return False
            hooks.item_start(context)
        except Exception as exc:
            run._fail(exc, cancel=True)
            run._deliver(index, ItemError.from_exception(index, exc))
            return False
        ctx.item_started()
        self.context = context
        return True

    def _item_done(self) -> None:
        run, context, outcome, index = self.run, self.context, self.outcome, self.index
        hooks, ctx = run._hooks, run.context
        assert hooks is not None and ctx is not None and context is not None
        self.context = None
        if isinstance(outcome, ItemPending):
            ctx.item_cut_short()  # hooks still see it; a Checkpoint does not record it
        else:
            ctx.item_finished(context, failed=isinstance(outcome, ItemError))
        pending: list[Future[Any]] = []
        try:
            pending = hooks.item_done(context, outcome)
        except Exception as exc:
            if run._closed:  # left running by a second Ctrl-C: the store has closed
                logger.info("symbatcher: item %d ended after its run closed: not recorded", index)
            else:
                logger.error("symbatcher: a hook failed after item %d; stopping the run", index)
                run._fail(exc, cancel=True)
        if not pending:
            run._deliver(index, outcome)
            return
        # Handed on once durable; meanwhile this worker goes on. At most one of its
        # outcomes waits at a time, so what a crash can lose stays bounded by the workers.
        backlog = self.backlog
        backlog.add(pending, ctx.idle)
        waited = pending[0] if len(pending) == 1 else _when_all(pending)
        waited.add_done_callback(lambda done: run._durable(index, outcome, done, backlog))


def _cut_short(exc: BaseException) -> bool:
    """Whether ``exc`` comes of a refusal by a stopped run (its own or a cause of it)."""
    return any(isinstance(error, RunCancelledError) for error in error_chain(exc))


def _halted_by(exc: BaseException) -> bool:
    """Whether ``exc`` comes of what halted the run (see ``HaltingError``)."""
    return any(isinstance(error, HaltingError) for error in error_chain(exc))
