"""``symbatcher serve``: the REST API and a worker pool over one queue directory.

``<dir>/jobs.sqlite`` is the queue, ``<dir>/runs/<job id>`` each job's item state. Both
survive the process: start it again on the same directory and queued jobs run, and a job
that was running when the process died is claimed again once its lease lapses and resumes
from its items.

Stopping: a Ctrl-C waits for the running jobs, a second one or a SIGTERM gives them back
to the queue (``queue/process.py``, shared with ``symbatcher worker``).
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symbatcher.errors import ServiceError
from symbatcher.interrupts import Terminated, sigterm_raises
from symbatcher.queue.jobs import JobQueue
from symbatcher.queue.process import folder_pool, has_default_engine, stop_pool
from symbatcher.queue.retention import Retention

logger = logging.getLogger("symbatcher")


def serve(
    directory: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    lease: float = 30.0,
    imports: list[str] | None = None,
    data_dirs: list[str | Path] | None = None,
    token: str | None = None,
    log_level: str = "warning",
    default_price: Any = None,
    engine_timeout: float | None = None,
    keep: float | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run until interrupted (see the module's docstring for how it stops).

    Without an engine of its own in symai (once ``imports`` ran: one of them may register
    it) it takes only jobs that name a model (``settings.model``) whose provider's key is
    in its environment; with neither it refuses to start (``EngineNotAvailableError``):
    every job would fail. It also refuses (``ServiceError``) when it cannot listen at
    ``host:port``, before any job starts: a second service on a folder whose port is taken
    would otherwise run its jobs unseen. ``default_price`` prices the calls of models
    priced nowhere (see ``Cost``); ``engine_timeout``: seconds a request of a job's model
    may take (default: 600, as a request to ``--engine-url``). ``keep``:
    seconds an ended job is kept (its items, results and run directory) before it is
    removed (:class:`~symbatcher.queue.retention.Retention`); ``None`` keeps every job.
    ``on_ready(url)`` is called once it listens (``port=0``: a free port) and runs jobs.
    """
    import uvicorn

    from symbatcher.api.app import create_app

    for module in imports or []:
        importlib.import_module(module)  # modules whose @register names the expressions
    default_engine = has_default_engine("serve")
    listener = _listen(host, port)
    try:
        folder = Path(directory)
        queue = JobQueue(folder / "jobs.sqlite")
        app = create_app(
            queue, folder / "runs", token=token, data_dirs=data_dirs, default_engine=default_engine
        )
        pool = folder_pool(
            queue, folder, workers, lease, default_price, engine_timeout, default_engine
        )
        config: Any = uvicorn.Config(app, host=host, port=port, log_level=log_level)
        server = uvicorn.Server(config)
        retention = Retention(queue, folder / "runs", keep) if keep is not None else None
        pool.start()
        bound_host, bound_port = listener.getsockname()[:2]
        url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        logger.debug("symbatcher serve: listening on %s", url)  # on_ready says it to people
        if on_ready is not None:
            on_ready(url)
        with sigterm_raises():
            if retention is not None:
                retention.start()
            try:
                server.run(sockets=[listener])
            except BaseException as exc:
                stop_pool(pool, now=isinstance(exc, Terminated), who="serve")
                raise
            finally:
                if retention is not None:
                    retention.stop()
            stop_pool(pool, now=False, who="serve")
        queue.close()
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound and listening, or why it cannot be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ServiceError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; nothing was started"
        ) from None
