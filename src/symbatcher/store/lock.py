"""One process per run directory: an OS file lock, and a note saying who holds it.

The lock is ``flock``-based (filelock), so the kernel drops it when its process dies: a
killed run never leaves a stale lock behind. The holder note is only for the message a
second process shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from symbatcher.errors import RunLockedError


class RunLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = FileLock(directory / "run.lock", thread_local=False)
        self._note = directory / "holder.json"

    def acquire(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunLockedError(
                f"run directory {self.directory} is in use by {self._holder()}; "
                f"wait for that run to end or stop it, then run again"
            ) from None
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "started": time.time(),
            "command": " ".join(sys.argv)[:500],
        }
        self._note.write_text(json.dumps(note), encoding="utf-8")

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                self._note.unlink()
            self._lock.release()

    def holder(self) -> str | None:
        """Who runs in the directory now (as the refusal names them), or None: for a
        reader that must tell items in flight from items a stopped run left."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return self._holder()
        except OSError:  # a directory this user may read but not lock: nobody known
            return None
        self._lock.release()
        return None

    def running_since(self) -> float | None:
        """When the run :meth:`holder` names started (a ``time.time()``), or None when its
        note does not say (ask ``holder()`` first: the note of a run gone is gone too)."""
        try:
            started = json.loads(self._note.read_text(encoding="utf-8")).get("started")
        except (OSError, ValueError, AttributeError):
            return None
        return float(started) if isinstance(started, int | float) else None

    def _holder(self) -> str:
        try:
            note = json.loads(self._note.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "another process"
        return (
            f"pid {note.get('pid')} on {note.get('host')} since {note.get('since')} "
            f"({note.get('command') or 'unknown command'})"
        )
