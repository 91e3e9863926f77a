"""Carrying an item's run into threads the item starts itself.

A run knows its calls by the thread they come from: a worker thread carries the run (and
the item it works on) in thread-locals. An expression that fans its calls out on threads
of its own (``ThreadPoolExecutor.map`` over an input's chunks, say) would make calls that
belong to no run: sent to the engine directly, never batched, and unseen by the run's
hooks, so a budget would not count them and a checkpoint would not record them.
:func:`carry` wraps the work such a thread runs so that its calls are the item's, as if
the worker had made them::

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(carry(summarize_chunk), chunks))

While a carried function runs, its thread counts as a busy worker of the run, so a batch
may wait (at most its linger) for the call it is about to make. The worker that waits on
such threads stays counted busy too: batches then go when full or when they lingered out,
not as soon as every worker waits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import ParamSpec, TypeVar

from symbatcher.binding import current_route, routed_to
from symbatcher.hooks.chain import current_item, working_on

P = ParamSpec("P")
R = TypeVar("R")


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, to be run on another thread as part of the calling worker's item.

    Call it in the item (inside the expression's ``forward``), where the run is known;
    outside a run it returns ``fn`` unchanged, so an expression that uses it runs the same
    without symbatcher.
    """
    route = current_route()
    if route is None:
        return fn
    item = current_item()
    dispatcher = route.dispatcher

    @functools.wraps(fn)
    def carried(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_route() is route:  # run on the worker itself: it is in the run already
            return fn(*args, **kwargs)
        dispatcher.worker_busy()
        try:
            with ExitStack() as scope:
                scope.enter_context(routed_to(route, carried=True))
                if item is not None:
                    scope.enter_context(working_on(item))
                return fn(*args, **kwargs)
        finally:
            dispatcher.worker_idle()

    return carried
