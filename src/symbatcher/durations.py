"""Time spans as people read them, for what symbatcher tells them (ETAs, terms)."""

from __future__ import annotations


def spoken(seconds: float) -> str:
    """``seconds`` in the unit a person would use: 26 s, 4 min, 2.5 h, 30 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.3g} days"
