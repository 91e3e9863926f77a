"""``symbatcher serve``: the REST API and a worker pool over one queue directory.

``<dir>/jobs.sqlite`` is the queue, ``<dir>/runs/<job id>`` each job's item state. Both
survive the process: start it again on the same directory and queued jobs run, and a job
that was running when the process died is claimed again once its lease lapses and resumes
from its items.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from symbatcher.queue.jobs import JobQueue
from symbatcher.queue.worker import WorkerPool

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
) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM stop new jobs and wait for running ones)."""
    import uvicorn

    from symbatcher.api.app import create_app

    for module in imports or []:
        importlib.import_module(module)  # modules whose @register names the expressions
    folder = Path(directory)
    queue = JobQueue(folder / "jobs.sqlite")
    app = create_app(queue, folder / "runs", token=token, data_dirs=data_dirs)
    pool = WorkerPool(queue, folder / "runs", size=workers, lease=lease, poll=0.5)
    config: Any = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    server = uvicorn.Server(config)
    pool.start()
    try:
        server.run()
    finally:
        running = pool.running()
        if running:  # the wait may be long: say what it is for, and how to cut it short
            logger.warning(
                "symbatcher serve: stopping; waiting for %d running job(s) to finish (%s). "
                "Ctrl-C again to stop now: they resume from their items once their lease "
                "lapses after the service starts again.",
                len(running),
                ", ".join(job.id for job in running),
            )
        pool.stop()
        queue.close()
