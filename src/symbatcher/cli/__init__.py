"""The ``symbatcher`` command: a module per subcommand (``demo``, ``run``, ``status``,
``retry``, ``export``, ``serve``), each with its ``add_parser``; what they share (options,
the engine, a run as ``command.json`` describes it, the report at the end) in their own."""

from symbatcher.cli.main import main

__all__ = ["main"]
