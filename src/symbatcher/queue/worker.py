"""Workers that take jobs from the queue and run them, durably, one run directory a job.

A job's run directory (``<root>/<job id>``) holds its item-level state (a Checkpoint), so
a job claimed again after its worker died resumes where that worker stopped. While a job
runs, a heartbeat thread renews the lease and stores the progress figures every
``lease / 3`` seconds, at most a second apart (the API's live progress and a cancel are
only as fresh as the last beat; one UPDATE a second is nothing to SQLite). It also notices
a cancel request, a lost lease or the job's timeout, and then halts the run: no new item
starts, those in flight finish and are recorded. Between jobs an idle worker looks at the
queue every ``poll`` seconds (SQLite has no notifications); ``stop()`` wakes it at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from symbatcher.dispatch import DEFAULT_LINGER
from symbatcher.dollars import usd
from symbatcher.errors import EngineNotAvailableError
from symbatcher.hooks.base import Hook, ItemContext, RunContext
from symbatcher.interrupts import wait_until
from symbatcher.queue.jobs import Job, JobQueue, JobState
from symbatcher.queue.registry import ExpressionRegistry, UnknownExpressionError
from symbatcher.queue.registry import registry as default_registry

logger = logging.getLogger("symbatcher")
HEARTBEAT_MAX = 1.0  # seconds between beats, whatever the lease
STOPPING = "the service is stopping"


class _Control(Hook):
    """Lets the heartbeat thread halt the run: no item starts after ``halt``."""

    def __init__(self) -> None:
        super().__init__()
        self.run: RunContext | None = None
        self.reason: str | None = None

    def on_start(self, run: RunContext) -> None:
        self.run = run
        if self.reason is not None:  # halted before the run started: halt it now
            run.halt(self.reason, "cancelled")

    def admit(self, item: ItemContext) -> str | None:
        return self.reason

    def halt(self, reason: str, status: str) -> None:
        """Never waits: the run may not have started (or may never start)."""
        self.reason = reason
        if self.run is not None:
            self.run.halt(reason, status)  # the first reason wins, so twice is harmless


class JobWorker:
    """Runs queued jobs one at a time (a pool is several of these, see :class:`WorkerPool`)."""

    def __init__(
        self,
        queue: JobQueue,
        root: str | Path,
        *,
        registry: ExpressionRegistry | None = None,
        name: str | None = None,
        lease: float = 30.0,
        poll: float = 1.0,
        default_price: Any = None,
        engine_timeout: float | None = None,
        models_only: bool = False,
    ) -> None:
        self.queue = queue
        # with no engine of its own: leave the jobs that name no model to a process with one
        self.models_only = models_only
        self.default_price = default_price  # for models priced nowhere (see Cost)
        self.engine_timeout = engine_timeout  # a request of a job's model (None: 600 s)
        self.root = Path(root)
        self.registry = registry or default_registry
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.poll = poll
        self._stopping = threading.Event()
        self._halting = False  # stop now: halt the running job and give it back to the queue
        self._control: _Control | None = None  # the running job's
        self.job: Job | None = None  # the job it runs now
        self.halted = threading.Event()  # set when the heartbeat halts a run (cancel, ...)

    def stop(self) -> None:
        self._stopping.set()

    def stop_now(self) -> None:
        """Stop, and halt the running job: its items in flight finish, no other starts, and
        the job goes back to the queue (to resume from its items) instead of ending."""
        self._halting = True
        self._stopping.set()
        control = self._control
        if control is not None:
            control.halt(STOPPING, "cancelled")

    def serve(self) -> None:
        """Run jobs until :meth:`stop`."""
        while not self._stopping.is_set():
            if self.run_one() is None:
                self._stopping.wait(self.poll)

    def run_one(self) -> Job | None:
        """Claim one job and run it to its end; the ended job, or None if none was queued."""
        job = self.queue.claim(self.name, self.lease, models_only=self.models_only)
        if job is None:
            return None
        self.job = job
        again = f", claim {job.claims}" if job.claims > 1 else ""  # resumed from its items
        logger.info(
            "symbatcher: job %s (%s, %s items%s) started by %s",
            job.id,
            job.expression,
            job.total,
            again,
            self.name,
        )
        started = time.monotonic()
        try:
            state, error, progress = self._run(job)
        except Exception as exc:  # the job fails, the worker goes on
            logger.exception("symbatcher: job %s failed", job.id)
            state, error, progress = "failed", f"{type(exc).__name__}: {exc}", None
        finally:
            self.job = None
        if state == "queued":
            self.queue.release(job.id, self.name, progress=progress)
        else:
            self.queue.finish(job.id, self.name, state, error=error, progress=progress)
        figures = progress or {}
        logger.info(
            "symbatcher: job %s %s after %.1f s: %s of %s items done, %s failed%s",
            job.id,
            "given back to the queue" if state == "queued" else state,
            time.monotonic() - started,
            figures.get("done", "?"),
            job.total,
            figures.get("failed", "?"),
            f" ({error})" if error else "",
        )
        return self.queue.get(job.id)

    def _run(self, job: Job) -> tuple[JobState, str | None, dict[str, Any] | None]:
        from symbatcher.expression_loader import bound_expression
        from symbatcher.hooks import Budget, Checkpoint, Cost, Progress, ProgressEvent
        from symbatcher.scheduler import BatchScheduler

        try:
            target = self.registry.get(job.expression)
        except UnknownExpressionError as exc:
            return "failed", str(exc), None
        settings = job.settings
        if job.total is None:
            return "failed", "the job was submitted without items", None
        items: Iterator[Any] = self.queue.items(job.id)  # streamed: millions are not held
        limit = settings.get("limit")
        total = job.total if limit is None else min(int(limit), job.total)
        if total < job.total:  # a trial: the first items alone
            items = itertools.islice(items, total)
        latest: dict[str, Any] = {}

        def on_progress(event: ProgressEvent) -> None:
            latest.update(_figures(event))

        control = self._control = _Control()
        if self._halting:  # stop_now() came before the control was there to halt
            control.halt(STOPPING, "cancelled")
        cost = Cost(settings.get("prices"), default=self.default_price)
        checkpoint = Checkpoint(self.root / job.id, retry_failed=bool(settings.get("retry_failed")))
        hooks: list[Any] = [checkpoint, cost, control]
        if settings.get("max_cost") is not None:
            hooks.append(Budget(float(settings["max_cost"])))
        hooks.append(Progress(show=False, callback=on_progress, interval=0.5))
        inflight = settings.get("max_inflight_batches")
        try:
            engines = _job_engines(settings.get("model"), self.engine_timeout)
        except EngineNotAvailableError as exc:  # its key gone since it was submitted, say
            return "failed", str(exc), None
        scheduler = BatchScheduler(
            engines,
            hooks=hooks,
            error_handling=settings.get("error_handling", "continue"),
            max_inflight_batches=None if inflight is None else int(inflight),
            linger=float(settings.get("linger", DEFAULT_LINGER)),
        )
        stream = scheduler._stream(
            bound_expression(target, settings.get("as"), settings.get("params")),
            items,
            int(settings.get("workers", 8)),
            int(settings.get("batch_size", 5)),
            dict(settings.get("params") or {}),
            {"replay_restored": False, "total": total},
        )
        reason: list[str] = []
        done = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(job, control, latest, reason, done),
            name=f"symbatcher-heartbeat-{job.id[:8]}",
            daemon=True,
        )
        beat.start()
        try:
            with stream:
                for _ in stream:
                    pass
        finally:
            self._control = None
            done.set()
            beat.join()
        stats = stream.stats
        figures = dict(latest)  # the last progress event, sent at the end of the run
        if total < job.total:
            figures["trial"] = _trial(checkpoint.store, job.total, total)
        if reason:
            return ("cancelled" if reason[0] == "cancelled" else "failed"), reason[0], figures
        if self._halting:  # given back; if it had just finished, its next claim says so
            return "queued", None, figures
        if stats.status == "budget_reached":
            return "failed", _budget_reached(checkpoint.store, job.total), figures
        if stats.status == "failed" and stats.stop_reason:  # halted (a model with no price)
            failed = f"{stats.failed} item(s) failed, " if stats.failed else ""
            why = f"{stats.stop_reason}; {failed}the items not done are pending"
            return "failed", why, figures
        if stats.failed:
            return "failed", f"{stats.failed} item(s) failed", figures
        return "succeeded", None, figures

    def _heartbeat(
        self,
        job: Job,
        control: _Control,
        latest: dict[str, Any],
        reason: list[str],
        done: threading.Event,
    ) -> None:
        deadline = time.monotonic() + job.timeout if job.timeout else None
        while not done.wait(min(self.lease / 3, HEARTBEAT_MAX)):
            current = self.queue.heartbeat(job.id, self.name, self.lease, progress=dict(latest))
            why = None
            if current is None:
                why = "lost the job's lease to another worker"
            elif current.cancel_requested:
                why = "cancelled"
            elif deadline is not None and time.monotonic() > deadline:
                why = f"timed out after {job.timeout:g} s"
            if why is not None:
                reason.append(why)
                control.halt(why, "cancelled")
                self.halted.set()
                return


def _figures(event: Any) -> dict[str, Any]:
    figures: dict[str, Any] = dataclasses.asdict(event)
    return figures


class WorkerPool:
    """``size`` workers in threads of this process, each running jobs one at a time."""

    def __init__(self, queue: JobQueue, root: str | Path, size: int = 2, **options: Any) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got {size!r}")
        self.workers = [JobWorker(queue, root, **options) for _ in range(size)]
        self._threads: list[threading.Thread] = []
        self._live = 0  # workers still serving
        self._live_lock = threading.Lock()
        self._all_left = threading.Event()
        self._all_left.set()  # none started

    def start(self) -> WorkerPool:
        self._live = len(self.workers)
        self._all_left.clear()
        for worker in self.workers:
            # daemon: a process told to exit at once (a third Ctrl-C) must not wait for
            # them at interpreter exit; stop() is what waits
            thread = threading.Thread(
                target=self._serve, args=(worker,), name=f"symbatcher-{worker.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _serve(self, worker: JobWorker) -> None:
        try:
            worker.serve()
        except Exception:  # a job's own errors fail the job; this is the queue failing
            logger.exception("symbatcher: %s stopped on an error", worker.name)
        finally:
            with self._live_lock:
                self._live -= 1
                if not self._live:
                    self._all_left.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every worker has left: after :meth:`stop`, or each on an error it could not
        serve past (a queue it could no longer read). False if the timeout passed first."""
        return wait_until(self._all_left, timeout)

    def running(self) -> list[Job]:
        """The jobs its workers run now."""
        return [job for worker in self.workers if (job := worker.job) is not None]

    def stop(self, now: bool = False) -> None:
        """Ask every worker to stop after its current job (``now``: to halt it and give it
        back to the queue once its items in flight are done), and wait for them."""
        for worker in self.workers:
            if now:
                worker.stop_now()
            else:
                worker.stop()
        # an event, not Thread.join: on Python 3.11 a join cut short by Ctrl-C marks the
        # thread stopped while it runs (CPython gh-90882), and stop(now=True) after it
        # would not wait at all
        wait_until(self._all_left)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _trial(store: Any, total: int, limit: int) -> dict[str, Any]:
    """What a trial leaves: the items not run, and what they would cost at the rate of
    those run (no rate while none has finished)."""
    totals = store.totals()
    left = total - totals.finished
    trial: dict[str, Any] = {"limit": limit, "items_left": left}
    rate = totals.finished > 0
    per_item = totals.cost_per_item if rate else None
    trial["tokens_left"] = round(totals.tokens_per_item * left) if rate else None
    trial["cost_left"] = None if per_item is None else per_item * left
    trial["cost_per_item"] = per_item
    return trial


def _budget_reached(store: Any, total: int) -> str:
    """Why the job stopped, and what would finish it: the pending items' cost at the rate
    of those run, and the budget to retry with."""
    why = "budget reached; the rest of the items are pending"
    totals = store.totals()
    left = total - totals.finished
    per_item = totals.cost_per_item
    if left <= 0 or not per_item:
        return why
    return (
        f"{why} ({left:,} of them: about {usd(per_item * left)} more at {usd(per_item)} an "
        f"item; retry with settings.max_cost of about {usd(totals.cost + per_item * left)} "
        f"to finish the job)"
    )


def _job_engines(model: str | None, timeout: float | None = None) -> Any:
    """The engines a job's calls go to: symai's engine for the model the job names (its
    own, for this job only: jobs on other models run beside it), else the service's (a job
    queued before the service lost its engine fails saying so, its items untouched)."""
    if model is None:
        from symbatcher.binding import available_engine

        try:
            available_engine("neurosymbolic")
        except EngineNotAvailableError as exc:
            raise EngineNotAvailableError(
                f"the job names no model (settings.model) and the service has no engine of "
                f"its own: {exc}"
            ) from None
        return ("neurosymbolic",)
    from symbatcher.local import DEFAULT_TIMEOUT
    from symbatcher.providers import hosted_engine

    # a request of a job's model may take as long as one to a server at --engine-url
    return {"neurosymbolic": hosted_engine(model, timeout=timeout or DEFAULT_TIMEOUT)}
