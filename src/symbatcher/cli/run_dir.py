"""What a run directory keeps beside its state: ``command.json``, what ``run`` was asked
(so ``retry`` and a second ``run`` need nothing else), and stdin's copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symbatcher.errors import CommandError

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
