"""The ``symbatcher`` command: its parser, and what each way of ending says."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence

from symbatcher.cli import demo, export, models, retry, run, serve, status, worker
from symbatcher.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from symbatcher.errors import SymbatcherError
from symbatcher.interrupts import Terminated, sigterm_raises


def _versions() -> str:
    """symbatcher's version and the symbolicai it runs on (read without importing symai)."""
    from importlib.metadata import PackageNotFoundError, version

    from symbatcher import __version__

    try:
        symai = version("symbolicai")
    except PackageNotFoundError:
        symai = "not installed"
    return f"symbatcher {__version__} (symbolicai {symai}, Python {platform.python_version()})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symbatcher",
        description="Run a symbolicai Expression over many inputs, its engine calls batched.",
    )
    parser.add_argument("--version", action="version", version=_versions())
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (demo, run, status, retry, export, models):
        module.add_parser(commands)
    commands.add_parser("config-schema", help="print the run config's JSON schema")
    serve.add_parser(commands)
    worker.add_parser(commands)
    return parser


def config_schema_command(args: argparse.Namespace) -> int:
    from symbatcher.config import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


#: what each subcommand runs
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": demo.demo_command,
    "run": run.run_command,
    "retry": retry.retry_command,
    "status": status.status_command,
    "export": export.export_command,
    "models": models.models_command,
    "config-schema": config_schema_command,
    "serve": serve.serve_command,
    "worker": worker.worker_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # a SIGTERM (a container being stopped) stops a run like a Ctrl-C: the calls in
        # flight finish and are recorded, where the default would end the process on the
        # spot, their answers paid for and lost
        with sigterm_raises():
            return COMMANDS[args.command](args)
    except SymbatcherError as exc:
        print(f"symbatcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(f"symbatcher: terminated{_resume_hint(args)}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"symbatcher: interrupted{_resume_hint(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `symbatcher status --json | head`: the reader has had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return EXIT_BROKEN_PIPE


def _resume_hint(args: argparse.Namespace) -> str:
    """What a stopped ``run`` or ``retry`` left, and how to go on."""
    if args.command not in ("run", "retry"):
        return ""
    return "; what finished is kept, run the same command to resume"
