"""``symbatcher worker``: more workers over a service's queue folder, in a process of their
own, without the REST API."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

from symbatcher.cli.exits import EXIT_OK
from symbatcher.cli.options import engine_options
from symbatcher.cli.serve import queue_options, service_setup


def add_parser(commands: Any) -> None:
    """``symbatcher worker``."""
    worker = commands.add_parser(
        "worker",
        help="run a service's jobs in one more process (no API): beside `serve` on its --dir",
        description="Run the jobs of a queue folder that `symbatcher serve --dir` made, in "
        "this process, without the REST API. One process runs its items in threads, so "
        "symai's CPU per query caps it; each further process runs more jobs at once. Give "
        "it the engine options the service has; without an engine of its own it takes only "
        "jobs that name their model.",
    )
    queue_options(worker)
    engine_options(
        worker,
        "jobs send their calls to this OpenAI-compatible server (vLLM, llama.cpp) as "
        "symai's 'neurosymbolic' engine; no symai config needed",
    )


def worker_command(args: argparse.Namespace) -> int:
    from symbatcher.queue.process import work

    with ExitStack() as stack:
        default_price = service_setup(args, stack)
        work(
            args.dir,
            workers=args.workers,
            lease=args.lease,
            imports=args.imports,
            default_price=default_price,
            engine_timeout=args.engine_timeout,
            on_ready=lambda: print(
                f"symbatcher worker: {args.workers} worker(s) on the queue in {args.dir}; "
                "Ctrl-C stops (after the running jobs; twice: now)",
                file=sys.stderr,
            ),
        )
    return EXIT_OK
