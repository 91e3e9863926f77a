"""What a run directory keeps beside its state: ``command.json``, what ``run`` was asked
(so ``retry`` and a second ``run`` need nothing else), and stdin's copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symbatcher.errors import CommandError

#: where ``run`` keeps its state without ``--run-dir``, and so where ``status``, ``export``
#: and ``retry`` look without one
DEFAULT_RUN_DIR = "symbatcher-run"
#: what ``status``, ``export`` and ``retry`` say of their run directory argument
_WHERE = f"default ./{DEFAULT_RUN_DIR}, where `run` keeps it"
RUN_DIR_HELP = f"a run's directory ({_WHERE})"
RUN_DIRS_HELP = f"one or more ({_WHERE})"
COMMAND_FILE = "command.json"
STDIN_COPY = "input.jsonl"


def keep_command(run_dir: Path, command: dict[str, Any]) -> None:
    (run_dir / COMMAND_FILE).write_text(json.dumps(command, indent=2), encoding="utf-8")


def stored_command(run_dir: Path) -> dict[str, Any]:
    path = run_dir / COMMAND_FILE
    try:
        command: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(
            f"{run_dir} was not made by `symbatcher run` (no {COMMAND_FILE})"
        ) from None
    return command
