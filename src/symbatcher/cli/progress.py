"""What a command shows while a run goes on: a bar on a terminal, a line now and then
elsewhere."""

from __future__ import annotations

import sys
from typing import Any

from symbatcher.dollars import usd
from symbatcher.durations import spoken


def show_progress(choice: str) -> bool | None:
    return {"on": True, "off": False}.get(choice)


#: seconds between progress lines where stderr is no terminal (a container's log, cron)
PROGRESS_EVERY = 30.0


def progress_hook(choice: str) -> Any:
    """A bar on a terminal; elsewhere (``auto``) a line every :data:`PROGRESS_EVERY`
    seconds, so a run in a container's log is not silent for hours."""
    from symbatcher.hooks import Progress
    from symbatcher.hooks.progress import is_terminal

    if choice == "auto" and not is_terminal(sys.stderr):
        return Progress(show=False, callback=_progress_line, interval=PROGRESS_EVERY)
    return Progress(show=show_progress(choice))


def _progress_line(event: Any) -> None:
    if event.status != "running":
        return  # the end: the summary says it
    total = f"/{event.total:,} items ({event.percent:.1f}%)" if event.total else " items"
    left = f", about {spoken(event.eta_seconds)} left" if event.eta_seconds else ""
    failed = f", {event.failed:,} failed" if event.failed else ""
    spent = f", {usd(event.cost)} spent" if event.cost or event.max_cost is not None else ""
    print(
        f"symbatcher: {event.done:,}{total}, {event.items_per_second:.1f} items/s"
        f"{left}{failed}{spent}",
        file=sys.stderr,
        flush=True,
    )
