"""What a command says of a run directory: its counts, failures by type, pace, and what
the rest would cost; and the exit status that goes with it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from symbatcher.cli.exits import EXIT_BUDGET, EXIT_FAILED, EXIT_OK
from symbatcher.dollars import usd
from symbatcher.durations import spoken
from symbatcher.errors import SymbatcherError

SHOW_ERROR_TYPES = 5


def summary_lines(
    run_dir: Path, live: bool = False, since: float | None = None
) -> tuple[list[str], int]:
    """The run's counts, then its failures by error type (largest first, a few examples
    each): what a user looks at first when a run did not all succeed. ``live``: a run
    is going on in the directory, so its started items are in flight, not cut short;
    ``since``: when it started, for its pace and what is left."""
    from symbatcher.store.sqlite import SQLiteStore
    from symbatcher.store.summary import summarize

    summary = summarize(SQLiteStore(run_dir), since)
    started = ""
    if summary.running:
        started = f"{summary.running} {'running' if live else 'interrupted'}, "
    lines = [
        f"{summary.items} items: {summary.succeeded} succeeded, {summary.failed} failed, "
        f"{started}{summary.pending - summary.running} pending; cost {usd(summary.cost)}"
    ]
    if since is not None:
        elapsed, left = time.time() - since, summary.pending
        lines.append(_pace(summary.finished_since, elapsed, left, summary.cost_per_item))
    if len(summary.models) > 1:  # an expression that switches models: where the cost went
        lines.extend(
            f"  {model}: {used.calls:,} calls, {used.tokens:,} tokens, {usd(used.cost)}"
            for model, used in summary.models.items()
        )
    for group in summary.failures[:SHOW_ERROR_TYPES]:
        more = group.count - len(group.indices)
        named = ", ".join(map(str, group.indices)) + (f" and {more:,} more" if more else "")
        label = "item" if group.count == 1 else "items"
        message = group.message if len(group.message) <= 160 else group.message[:157] + "..."
        lines.append(f"  {group.count} failed with {group.error_type}: {message} ({label} {named})")
    if len(summary.failures) > SHOW_ERROR_TYPES:
        lines.append(f"  ... and {len(summary.failures) - SHOW_ERROR_TYPES} more error types")
    if summary.failed:
        lines.append(f"  (every error: symbatcher export {run_dir})")
    if summary.running and not live:
        lines.append(
            f"  (interrupted items run again when the same command runs again, or with "
            f"symbatcher retry {run_dir})"
        )
    return lines, summary.failed


def projection(run_dir: Path, status: str, records: int | None) -> list[str]:
    """What the items not run yet would cost, at the rate of those run: after a trial
    (``--limit``; ``records`` in the data) or when the budget stopped the run (how large
    a budget would finish it)."""
    from symbatcher.store.sqlite import SQLiteStore

    store = SQLiteStore(run_dir)
    totals = store.totals()
    if status == "budget_reached":
        total = store.read_meta().get("total")
        left = (total if isinstance(total, int) else totals.items) - totals.finished
        if left <= 0 or not totals.finished:
            return []
        need = usd(totals.cost + totals.cost_per_item * left)
        rate = _at_rate(totals, left)
        return [f"  {left:,} items pending: {rate}; all of it needs --max-cost of about {need}"]
    left = 0 if records is None else records - totals.finished
    if left <= 0:
        return []
    go_on = "the same command without --limit runs them, keeping these"
    if not totals.finished:
        return [f"  {left:,} records of the data not run yet: {go_on}"]
    return [f"  {left:,} records of the data not run yet: {_at_rate(totals, left)}; {go_on}"]


def _at_rate(totals: Any, left: int) -> str:
    cost, tokens = totals.cost_per_item, totals.tokens_per_item
    spend = f"about {usd(cost * left)} ({usd(cost)} an item) and " if cost else ""
    return (
        f"{spend}{tokens * left:,.0f} tokens ({tokens:,.0f} an item) at the rate of the "
        f"{totals.finished:,} items run"
    )


def _pace(done: int, elapsed: float, left: int, per_item: float = 0.0) -> str:
    """How fast the run going on finishes items, and how long (and, at ``per_item``
    dollars, how much) the rest would take so."""
    if not done or elapsed <= 0:
        return f"  this run: no item finished yet, {spoken(elapsed)} in"
    rate = done / elapsed
    more = f" and about {usd(per_item * left)} ({usd(per_item)} an item)" if per_item else ""
    return (
        f"  this run: {done} items finished in {spoken(elapsed)} ({rate:.1f} items/s); "
        f"the {left} left take about {spoken(left / rate)}{more} at that pace"
    )


def failed_fast(exc: BaseException, command: dict[str, Any]) -> str:
    """With ``fail_fast`` the run raises its first item's error: say it in a line, as the
    end of a run, instead of a traceback through symai; anything else goes on up."""
    if command.get("error_handling") != "fail_fast" or not isinstance(exc, Exception):
        raise exc
    if isinstance(exc, SymbatcherError):  # symbatcher's own: a set-up error, said as one
        raise exc
    notes = "; ".join(note.removeprefix("symbatcher: ") for note in getattr(exc, "__notes__", []))
    print(
        f"symbatcher: fail_fast: {type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""),
        file=sys.stderr,
    )
    return "failed"


def finish(
    run_dir: Path,
    status: str,
    stats: Any = None,
    wrote: str | None = None,
    records: int | None = None,
) -> int:
    """The directory's counts (every run of it so far), then what this run did and how
    fast: the figures a user tunes ``--workers`` and ``--batch-size`` by; after a trial
    (``--limit``), what the rest of the data's ``records`` would cost at its rate."""
    lines, failed = summary_lines(run_dir)
    if stats is not None:
        lines.append(f"  this run: {stats.summary(spend=False).split(': ', 1)[1]}")
        if stats.stop_reason:  # the run halted: its items not done stay pending
            lines.append(f"  stopped: {stats.stop_reason}; run the same command to go on")
    if wrote is not None:
        lines.append(f"  {wrote}")
    lines.extend(projection(run_dir, status, records))
    print(f"{status}: " + "\n".join(lines), file=sys.stderr)
    if status == "budget_reached":
        return EXIT_BUDGET
    return EXIT_FAILED if failed or status == "failed" else EXIT_OK
