"""Import symai quietly, and turn its config failures into one clear error.

symai 2.2 reads ``symai.config.json`` from the current directory, then
``<sys.prefix>/.symai``, then ``~/.symai``; when none exists it writes an empty
template into ``<sys.prefix>/.symai`` without prompting. Its warnings go to the
``symai`` logger, which has only a ``NullHandler``. So a bare machine imports
symai silently; the one failure is a config file that exists but lacks required
keys, which surfaces as a bare ``KeyError`` at import. We re-raise that naming
the file and the key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from symbatcher.errors import SymaiConfigError

CONFIG_NAME = "symai.config.json"


def config_candidates() -> list[Path]:
    """Where symai 2.2 looks for its config, in its own order."""
    return [
        Path.cwd() / CONFIG_NAME,
        Path(sys.prefix) / ".symai" / CONFIG_NAME,
        Path.home() / ".symai" / CONFIG_NAME,
    ]


def active_config_path() -> Path | None:
    """The config file symai uses, or None when it will write a template."""
    for path in config_candidates():
        if path.is_file():
            return path
    return None


def import_symai() -> None:
    """Import symai once; raise :class:`SymaiConfigError` naming the broken file."""
    if "symai" in sys.modules and hasattr(sys.modules["symai"], "Expression"):
        return
    try:
        import symai  # noqa: F401
    except KeyError as exc:
        path = active_config_path()
        where = str(path) if path is not None else "the symai config"
        msg = (
            f"symai could not start: {where} lacks the key {exc.args[0]!r}. "
            f"Add it (an empty string is fine for unused engines) or delete the file "
            f"so symai writes a complete template."
        )
        sys.modules.pop("symai", None)
        raise SymaiConfigError(msg) from exc
