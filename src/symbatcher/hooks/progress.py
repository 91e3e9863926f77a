"""Progress: a live bar on a terminal, and the same figures for programs."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from symbatcher.dollars import usd
from symbatcher.hooks.base import Hook, ItemContext, RunContext


@dataclass(frozen=True)
class ProgressEvent:
    """Where a run stands. ``done`` includes items restored from an earlier run."""

    status: str
    done: int
    total: int | None
    succeeded: int
    failed: int
    in_flight: int
    items_per_second: float
    eta_seconds: float | None
    tokens: int
    cost: float
    max_cost: float | None
    elapsed: float

    @property
    def percent(self) -> float | None:
        return 100.0 * self.done / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


class Progress(Hook):
    """Shows a tqdm bar on stderr when it is a terminal (``show=True`` forces it, ``False``
    hides it) and calls ``callback(ProgressEvent)`` at most every ``interval`` seconds
    and once at the end."""

    def __init__(
        self,
        *,
        show: bool | None = None,
        callback: Callable[[ProgressEvent], None] | None = None,
        interval: float = 0.5,
        file: TextIO | None = None,
        description: str = "items",
    ) -> None:
        super().__init__()
        self.show = show
        self.callback = callback
        self.interval = interval
        self.file = file
        self.description = description
        self._bar: Any = None
        self._lock = threading.Lock()
        self._last_emit = 0.0
        self._start_done = 0
        self._started = 0.0

    def on_start(self, run: RunContext) -> None:
        self._started = time.monotonic()
        self._start_done = run.done
        stream = self.file if self.file is not None else sys.stderr
        notebook = self.file is None and in_notebook()
        show = self.show if self.show is not None else notebook or is_terminal(stream)
        if show:
            self._bar = _bar_class(notebook)(
                total=run.total,
                initial=run.done,
                desc=self.description,
                unit="item",
                file=stream,
                dynamic_ncols=True,
                smoothing=0.1,
            )
            self._postfix(run)

    def on_item_done(self, item: ItemContext, outcome: Any) -> None:
        run = item.run
        now = time.monotonic()
        with self._lock:
            if self._bar is not None:
                self._postfix(run)  # first: update() draws, and would show the last one
                self._bar.update(1)
            if self.callback is None or now - self._last_emit < self.interval:
                return
            self._last_emit = now
        self.callback(self.event(run))

    def on_end(self, run: RunContext) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.n = run.done
                self._postfix(run)
                self._bar.close()
                self._bar = None
        if self.callback is not None:
            self.callback(self.event(run))

    def event(self, run: RunContext) -> ProgressEvent:
        elapsed = time.monotonic() - self._started if self._started else 0.0
        processed = run.done - self._start_done
        rate = processed / elapsed if elapsed > 0 else 0.0
        remaining = run.total - run.done if run.total is not None else None
        eta = remaining / rate if remaining is not None and rate > 0 else None
        return ProgressEvent(
            status=run.status,
            done=run.done,
            total=run.total,
            succeeded=run.succeeded,
            failed=run.failed,
            in_flight=run.in_flight,
            items_per_second=rate,
            eta_seconds=eta,
            tokens=run.tokens,
            cost=run.spent,
            max_cost=run.max_cost,
            elapsed=elapsed,
        )

    def _postfix(self, run: RunContext) -> None:
        cost = usd(run.spent) + (f"/{usd(run.max_cost)}" if run.max_cost is not None else "")
        self._bar.set_postfix_str(
            f"failed={run.failed} tokens={run.tokens} cost={cost}", refresh=False
        )


def _bar_class(notebook: bool = False) -> Any:
    """tqdm without its monitor thread, which would outlive the run; in a notebook its
    widget when ipywidgets is there (else the text bar, which Jupyter redraws in place)."""
    from tqdm import tqdm

    base: Any = tqdm
    if notebook:
        from tqdm import notebook as widgets

        if widgets.IProgress is not None:
            base = widgets.tqdm

    class Bar(base):  # type: ignore[misc]
        monitor_interval = 0

    return Bar


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (notebook, lab, VS Code, Colab): its stderr is
    no terminal, yet it shows a bar (tqdm.autonotebook's test, without importing IPython)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    try:
        shell = sys.modules["IPython"].get_ipython()
    except Exception:  # an IPython too odd to ask: no bar rather than a failed run
        return False
    return shell is not None and "qt" not in type(shell).__name__.lower()


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False
