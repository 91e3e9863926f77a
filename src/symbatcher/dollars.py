"""Dollar amounts as people read them, for what symbatcher tells them (costs, budgets)."""

from __future__ import annotations

import math


def usd(amount: float) -> str:
    """Dollars to the cent, or to two significant digits under a cent ($0.00012)."""
    if amount <= 0:
        return "$0.00"
    return f"${amount:,.{max(2, 1 - math.floor(math.log10(amount)))}f}"
