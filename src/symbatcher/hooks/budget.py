"""Budget: start no item once what is spent plus what is in flight would reach it."""

from __future__ import annotations

import logging

from symbatcher.hooks.base import Hook, ItemContext, RunContext
from symbatcher.hooks.cost import Cost

logger = logging.getLogger("symbatcher")

BUDGET_REACHED = "budget_reached"


class Budget(Hook):
    """Stops starting items when spent + estimate for items in flight >= ``max_cost`` USD.

    Spent counts earlier runs on the same store (resume), so one budget holds across
    restarts. Items in flight finish; the rest stay pending, so resuming with a larger
    budget continues. The estimate for an item in flight is the mean cost of finished
    items; until one finished it is 0, so the first ``num_workers`` items always start.
    """

    requires = (Cost,)
    start_order = -20  # before the checkpoint, which records the budget with the run

    def __init__(self, max_cost: float) -> None:
        super().__init__()
        if isinstance(max_cost, bool) or not isinstance(max_cost, int | float) or max_cost < 0:
            raise ValueError(f"max_cost must be a non-negative number of USD, got {max_cost!r}")
        self.max_cost = float(max_cost)

    def on_start(self, run: RunContext) -> None:
        run.max_cost = self.max_cost
        run.strict_pricing = True

    def admit(self, item: ItemContext) -> str | None:
        run = item.run
        committed = run.spent + run.in_flight * run.mean_item_cost
        if committed >= self.max_cost:
            if not run.stopped():
                logger.info(
                    "symbatcher: budget of $%.4f reached ($%.4f spent, %d items in flight); "
                    "starting no further items",
                    self.max_cost,
                    run.spent,
                    run.in_flight,
                )
            run.halt(
                f"budget reached: spent ${run.spent:.4f} of ${self.max_cost:.4f}"
                + (f" with {run.in_flight} items in flight" if run.in_flight else ""),
                BUDGET_REACHED,
            )
            return run.stop_reason
        return None
