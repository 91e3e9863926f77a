"""``store.pages.paged``: every item with a status once, even as the reader changes them."""

from __future__ import annotations

import pytest

from symbatcher.store import ItemRecord, RunStore, pages
from symbatcher.store.pages import paged


@pytest.mark.parametrize("page", [1, 3, 512])
def test_each_failed_item_once_while_the_reader_retries_them(
    store: RunStore, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    monkeypatch.setattr(pages, "PAGE", page)
    failed = [0, 2, 3, 4, 7, 8, 9, 12]
    for i in range(13):
        store.item_started(ItemRecord(index=i, fingerprint=f"fp{i}"))
        status = "failed" if i in failed else "succeeded"
        store.item_finished(ItemRecord(index=i, fingerprint=f"fp{i}", status=status)).result()
    seen = []
    for record in paged(store, ("failed",)):
        seen.append(record.index)
        # the retry of this item, and one that fails again: neither is read a second time
        store.item_started(ItemRecord(index=record.index, fingerprint=record.fingerprint))
        again = "failed" if record.index % 2 else "succeeded"
        store.item_finished(ItemRecord(index=record.index, fingerprint="fp", status=again))
    assert seen == failed
