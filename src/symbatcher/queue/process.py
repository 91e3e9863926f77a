"""A process that serves a queue folder: whether it can run jobs, how it stops, and the
workers alone (``symbatcher worker``), without the REST API of ``symbatcher serve``.

One process runs a job's items in threads, so symai's CPU per query (about half a
millisecond) caps it at a couple of thousand calls a second. More processes over the same
folder (``symbatcher worker --dir``, beside the service) run more jobs at once: each job is
claimed by one of them, atomically, under a lease (see ``jobs.py``), and the folder's SQLite
queue is shared by the processes of one machine.

Stopping, for both: a Ctrl-C starts no new job and waits for the running ones to end. A
second Ctrl-C, or a SIGTERM, stops now: the running jobs start no further item, their items
in flight finish, and they go back to the queue to resume from their items. A third Ctrl-C
exits at once; those jobs are then claimed again once their lease lapses.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symbatcher.errors import EngineNotAvailableError, ServiceError
from symbatcher.interrupts import Terminated, sigterm_raises
from symbatcher.queue.jobs import JobQueue
from symbatcher.queue.worker import WorkerPool

logger = logging.getLogger("symbatcher")


def _noun(who: str) -> str:
    """What the command's process is called in a sentence."""
    return "service" if who == "serve" else who


def has_default_engine(who: str) -> bool:
    """Whether symai has an engine for jobs that name no model; without one, whether any job
    could run (a provider's key is set, so a job may name one of its models), else why not.
    ``who``: the command (``serve``, ``worker``), for the messages."""
    from symbatcher.binding import available_engine
    from symbatcher.providers import catalog

    try:
        available_engine("neurosymbolic")
        return True
    except EngineNotAvailableError as exc:
        keys = sorted({entry.key_variable for entry in catalog() if entry.key_set})
        if not keys:
            raise EngineNotAvailableError(
                f"{exc} Or set a provider's API key variable (DEEPSEEK_API_KEY, "
                f"OPENAI_API_KEY, ...: `symbatcher models` lists them) where the {_noun(who)} "
                f"starts, and jobs name their model in settings.model."
            ) from None
    logger.warning(
        "symbatcher %s: no engine of its own (symai has no 'neurosymbolic' engine): it "
        "takes only jobs that name a model in settings.model; keys set: %s",
        who,
        ", ".join(keys),
    )
    return False


def stop_pool(pool: WorkerPool, now: bool, who: str) -> None:
    """Wait for the running jobs to end, or (``now``, or on a second Ctrl-C) halt them and
    give them back to the queue. Either wait may be long: say what it is for."""
    if not now:
        if running := pool.running():
            logger.warning(
                "symbatcher %s: stopping; waiting for %d running job(s) to finish (%s). "
                "Ctrl-C again to stop now: they go back to the queue and resume from their "
                "items when the %s starts again.",
                who,
                len(running),
                ", ".join(job.id for job in running),
                _noun(who),
            )
        try:
            pool.stop()
            return
        except KeyboardInterrupt:  # a second Ctrl-C, or a SIGTERM
            pass
    if running := pool.running():
        logger.warning(
            "symbatcher %s: stopping now; %d running job(s) finish their items in flight "
            "and go back to the queue (%s). Ctrl-C again to exit at once: they are then "
            "claimed again once their lease lapses.",
            who,
            len(running),
            ", ".join(job.id for job in running),
        )
    pool.stop(now=True)


def folder_pool(
    queue: JobQueue,
    directory: str | Path,
    workers: int,
    lease: float,
    default_price: Any,
    engine_timeout: float | None,
    default_engine: bool,
) -> WorkerPool:
    """The workers of a process over a queue folder (not started). With no engine of its
    own (``default_engine`` false) they claim only jobs that name their model."""
    return WorkerPool(
        queue,
        Path(directory) / "runs",
        size=workers,
        lease=lease,
        poll=0.5,
        default_price=default_price,
        engine_timeout=engine_timeout,
        models_only=not default_engine,
    )


def work(
    directory: str | Path,
    *,
    workers: int = 2,
    lease: float = 30.0,
    imports: list[str] | None = None,
    default_price: Any = None,
    engine_timeout: float | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the queue folder's jobs, ``workers`` at once, until interrupted (a Ctrl-C ends it
    normally once the running jobs ended; a SIGTERM raises :class:`Terminated` once they are
    back in the queue).

    The folder must hold a queue already (``symbatcher serve --dir`` makes it, and takes the
    jobs): a worker on a mistyped folder would wait for jobs that never come. Without an
    engine of its own it claims only jobs that name their model, leaving the others to a
    process that has one. ``default_price``, ``engine_timeout`` as for ``serve``.
    """
    queue_file = Path(directory) / "jobs.sqlite"
    if not queue_file.is_file():
        raise ServiceError(
            f"no queue in {directory}: {queue_file} does not exist (a queue folder is made by "
            f"`symbatcher serve --dir {directory}`, or JobQueue in Python); nothing was started"
        )
    for module in imports or []:
        importlib.import_module(module)  # modules whose @register names the expressions
    default_engine = has_default_engine("worker")
    queue = JobQueue(queue_file)
    try:
        pool = folder_pool(
            queue, directory, workers, lease, default_price, engine_timeout, default_engine
        )
        with sigterm_raises():
            pool.start()
            if on_ready is not None:
                on_ready()
            try:
                pool.wait()  # returns only if every worker left on its own
            except KeyboardInterrupt as exc:
                stop_pool(pool, now=isinstance(exc, Terminated), who="worker")
                if isinstance(exc, Terminated):
                    raise
                return
            pool.stop()
            raise ServiceError("every worker stopped on an error (see the log above)")
    finally:
        queue.close()
