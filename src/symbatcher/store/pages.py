"""A store's items with some status, read a page at a time, each page a short read.

For a run that works through stored items while it writes others (a retry of the failed
ones), or a reader whose output is consumed slowly (a snapshot): one read left open that
long would keep SQLite's log from being reset, and a list of them all would hold every
input (an outage can leave millions of failed items). Pages go in index order and each
starts after the last item of the one before, so an item the run changes meanwhile, which
it took from an earlier page, is not read twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from symbatcher.store.base import ItemRecord, RunStore

#: items per read
PAGE = 512


def paged(store: RunStore, statuses: tuple[str, ...], start: int = 0) -> Iterator[ItemRecord]:
    """The items with one of ``statuses`` (``()``: every item), in index order from
    ``start``."""
    while True:
        rows: Any = store.items(statuses, start)
        with closing(rows):
            page = list(itertools.islice(rows, PAGE))
        yield from page
        if len(page) < PAGE:
            return
        start = page[-1].index + 1
