"""Counting what only the cyclic GC frees: garbage in reference cycles waits for it, and
each of its collections stalls every worker of a run."""

from __future__ import annotations

import gc
from collections.abc import Callable


def left_in_cycles(run: Callable[[], None]) -> int:
    """How many objects ``run`` left that only the cyclic GC frees."""
    gc.collect()
    gc.disable()
    try:
        run()
        return gc.collect()
    finally:
        gc.enable()
