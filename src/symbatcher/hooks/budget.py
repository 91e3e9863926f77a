"""Budget: start no item once what is spent plus what is in flight would reach it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from symbatcher.dollars import usd
from symbatcher.hooks.base import Hook, ItemContext, RunContext
from symbatcher.hooks.cost import Cost

logger = logging.getLogger("symbatcher")

BUDGET_REACHED = "budget_reached"


class Budget(Hook):
    """Stops starting items when spent + estimate for items in flight >= ``max_cost`` USD.

    Spent counts earlier runs on the same store (resume), so one budget holds across
    restarts. Items in flight finish; the rest stay pending, so resuming with a larger
    budget continues. The estimate for an item in flight is the mean cost of finished
    items. Until one finished (this run or an earlier one) nothing is known of it, so one
    item runs alone first: all workers starting at once, a budget of five items' cost
    spent three times that with 16 workers.
    """

    requires = (Cost,)
    start_order = -20  # before the checkpoint, which records the budget with the run

    def __init__(self, max_cost: float) -> None:
        super().__init__()
        if isinstance(max_cost, bool) or not isinstance(max_cost, int | float) or max_cost < 0:
            raise ValueError(f"max_cost must be a non-negative number of USD, got {max_cost!r}")
        self.max_cost = float(max_cost)
        self._learned = threading.Condition()  # the probe ended: what an item costs is known
        self._probe: int | None = None  # the item that runs alone while nothing is known

    def on_start(self, run: RunContext) -> None:
        run.max_cost = self.max_cost
        run.strict_pricing = True
        with self._learned:
            self._probe = None  # a hook may serve several runs, one after another
        run.on_stop(self._wake)

    def _wake(self) -> None:
        with self._learned:
            self._learned.notify_all()

    def on_item_done(self, item: ItemContext, outcome: Any) -> None:
        with self._learned:
            if item.index == self._probe:
                self._probe = None  # ended or cut short: the next item may probe
                self._learned.notify_all()

    def admit(self, item: ItemContext) -> str | None:
        run = item.run
        with self._learned:  # an RLock: a halt's wake-up comes back here
            if not run.finished_items and self._probe is not None:
                with run.idle():  # no batch waits for this worker's calls meanwhile
                    self._learned.wait_for(
                        lambda: run.finished_items or self._probe is None or run.stopped()
                    )
            if run.stopped():
                return run.stop_reason or "the run is stopping"
            reason = self._reached(run)
            if reason is None and not run.finished_items:
                self._probe = item.index
            return reason

    def _reached(self, run: RunContext) -> str | None:
        """Why no item may start, if spent plus the estimate in flight reached the budget."""
        committed = run.spent + run.in_flight * run.mean_item_cost
        if committed < self.max_cost:
            return None
        if not run.stopped():
            logger.info(
                "symbatcher: budget of %s reached (%s spent, %d items in flight); "
                "starting no further items",
                usd(self.max_cost),
                usd(run.spent),
                run.in_flight,
            )
        run.halt(
            f"budget reached: spent {usd(run.spent)} of {usd(self.max_cost)}"
            + (f" with {run.in_flight} items in flight" if run.in_flight else ""),
            BUDGET_REACHED,
        )
        return run.stop_reason
