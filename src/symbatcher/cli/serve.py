"""``symbatcher serve``: the REST API and its workers over a queue folder."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from symbatcher.cli.engine import run_engine
from symbatcher.cli.exits import EXIT_OK
from symbatcher.cli.options import (
    check_engine_options,
    engine_of,
    engine_options,
    positive,
    positive_number,
)
from symbatcher.errors import CommandError


def add_parser(commands: Any) -> None:
    """``symbatcher serve``."""
    serve = commands.add_parser("serve", help="the REST API and workers over a queue folder")
    queue_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--data-dir", action="append", default=[], help="a folder jobs may read files from"
    )
    engine_options(
        serve,
        "jobs send their calls to this OpenAI-compatible server (vLLM, llama.cpp) as "
        "symai's 'neurosymbolic' engine; no symai config needed",
    )
    serve.add_argument(
        "--keep-days",
        type=positive_number("days"),
        help="remove a job (its items, results and run directory) this many days after it "
        "ended, e.g. 7 or 0.5 (default: keep every job until it is purged)",
    )


def serve_command(args: argparse.Namespace) -> int:
    try:
        from symbatcher.api.serve import serve
    except ImportError as exc:
        raise CommandError(
            f"the service needs the server extra: pip install 'symbatcher[server]' ({exc})"
        ) from None
    with ExitStack() as stack:
        default_price = service_setup(args, stack)
        serve(
            args.dir,
            host=args.host,
            port=args.port,
            workers=args.workers,
            lease=args.lease,
            imports=args.imports,
            data_dirs=args.data_dir,
            default_price=default_price,
            engine_timeout=args.engine_timeout,
            keep=None if args.keep_days is None else args.keep_days * 86400,
            on_ready=lambda url: print(
                f"symbatcher serve: listening on {url}, {args.workers} worker(s), queue in "
                f"{args.dir}; Ctrl-C stops (after the running jobs; twice: now)",
                file=sys.stderr,
            ),
        )
    return EXIT_OK


def service_setup(args: argparse.Namespace, stack: ExitStack) -> Any:
    """What a process serving a queue folder (``serve``, ``worker``) sets up from its
    options, undone by ``stack``: the expressions' modules imported, the log on stderr,
    the engine. Returns the price of calls priced nowhere (free on a self-hosted server)."""
    check_engine_options(args)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a server process: modules beside you import
    for module in args.imports:  # here, to name a bad one without a traceback
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CommandError(f"cannot import {module!r} (--import): {exc}") from exc
    stack.enter_context(_service_log())
    if not (args.engine_url or args.model):
        return None
    from symbatcher.pricing import FREE

    stack.enter_context(run_engine(engine_of(args)))
    return FREE if args.engine_url else None  # a self-hosted server: no per-token bill


def queue_options(parser: argparse.ArgumentParser) -> None:
    """The options of a process serving a queue folder, the API's aside."""
    parser.add_argument("--dir", default="symbatcher-service", help="queue and job state")
    parser.add_argument("--workers", type=positive, default=2, help="jobs run at once")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a claim lasts")
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], help="a module with @register"
    )


@contextmanager
def _service_log() -> Iterator[None]:
    """A service says what it does, a line per event with its time (jobs started and
    ended, jobs removed after their term): symbatcher's INFO records on stderr while the
    command runs. The process's own logging set-up is left as it was."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    log = logging.getLogger("symbatcher")
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # said once, not again by a handler of the root logger
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
