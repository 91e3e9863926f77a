"""Checkpoint: durable per-item state in a run directory, and resume from it.

Each item is recorded as running when it starts, its engine calls' tokens and cost as they
happen, and its outcome when it ends -- durable before the caller sees it. Opening a run
directory that holds state resumes it: succeeded items are not run again (their stored
results are replayed to the caller), failed ones only with ``retry_failed=True``, and items
that were running when the process died run again. The run's expression and dataset must
be the ones it started with, unless ``force=True``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from symbatcher.errors import RunMismatchError
from symbatcher.hooks.base import CallContext, Hook, ItemContext, Restored, RunContext
from symbatcher.hooks.cost import Cost
from symbatcher.results import ItemError, ItemPending
from symbatcher.store.base import FAILED, FINISHED, SUCCEEDED, ItemRecord, RunStore
from symbatcher.store.codec import dumps, dumps_ordered, fingerprint, loads, to_jsonable
from symbatcher.store.pages import paged
from symbatcher.store.sqlite import SQLiteStore, Synchronous

logger = logging.getLogger("symbatcher")

#: how a refusal says to go on anyway, from Python and from the command line
FORCE = "force=True; --force on the command line"


def encode_input(item: ItemContext) -> str:
    """The item's input as JSON, its keys in the data's order (a CSV's columns, say), and
    its fingerprint, of the key-sorted JSON, set on the item as a side effect: the same
    record with its keys in another order is the same item."""
    if item.input_json is None:
        value = item.input
        item.input_json = dumps_ordered(value)
        if item.fingerprint is None:
            scalar = value is None or isinstance(value, str | int | float)  # one text
            item.fingerprint = fingerprint(item.input_json if scalar else dumps(value))
    return item.input_json


def dataset_fingerprint(dataset: Sequence[Any]) -> str:
    """One fingerprint for a whole in-memory dataset (every item's JSON, in order)."""
    digest = hashlib.blake2b(digest_size=16)
    for item in dataset:
        digest.update(dumps(item).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    return digest.hexdigest()


class _FinishedPages:
    """The finished items a resumed run skips, read from the store a page at a time.

    ``restore`` asks in dataset order, so one page of ``index -> (status, fingerprint)`` at
    a time does: a resume of a million finished items held them all in a dict before
    (about 400 MB). A page read at index i holds rows from i on, which this run has not
    taken yet, so nothing it finishes meanwhile can show up in it.
    """

    PAGE = 4096

    def __init__(self, store: RunStore, statuses: tuple[str, ...]) -> None:
        self._store, self._statuses = store, statuses
        self._page: dict[int, tuple[str, str]] = {}
        self._start = self._end = 0  # the page holds every such row in [start, end)
        #: the highest such index, known once the last page is read (-1: none)
        self.last: int | None = None

    def get(self, index: int) -> tuple[str, str] | None:
        if index < self._start or (index >= self._end and self.last is None):
            self._read(index)
        return self._page.get(index)

    def _read(self, start: int) -> None:
        page = self._store.finished(self._statuses, start, self.PAGE)
        self._page, self._start = page, start
        self._end = max(page) + 1 if page else start
        self.last = max(page, default=-1) if len(page) < self.PAGE else None


class Checkpoint(Hook):
    """Keeps the run's state in ``run_dir`` (SQLite, WAL), or in any :class:`RunStore`."""

    requires = (Cost,)
    start_order = -10

    def __init__(
        self,
        run_dir: str | Path | RunStore,
        *,
        retry_failed: bool = False,
        force: bool = False,
        synchronous: Synchronous = "FULL",
        commit_interval: float = 0.02,
    ) -> None:
        super().__init__()
        if isinstance(run_dir, RunStore):
            self.store = run_dir
        else:
            self.store = SQLiteStore(
                run_dir, synchronous=synchronous, commit_interval=commit_interval
            )
        self.retry_failed = retry_failed
        self.force = force
        self.resumed = False
        #: the directory took the run: its lock is held and it holds this expression's run
        self.began = False
        self._finished: _FinishedPages | None = None
        self._verified = False  # the whole dataset matched: no per-item checks needed
        self._replay: Iterator[ItemRecord] | None = None

    # ---------------------------------------------------------------- the run
    def on_start(self, run: RunContext) -> None:
        self.began = False
        self.store.open()
        try:
            self._begin(run)
        except BaseException:
            self.store.close()
            raise
        self.began = True

    def _begin(self, run: RunContext) -> None:
        meta = self.store.read_meta()
        dataset_fp: str | None = None
        in_memory = isinstance(run.dataset, Sequence) and not isinstance(run.dataset, str | bytes)
        if in_memory and not run.indexed:
            dataset_fp = dataset_fingerprint(run.dataset)
        self.resumed = bool(meta)
        self._verified = False
        if meta:
            self._check_same(meta, run, dataset_fp)  # may take a grown dataset as the run's
            self._verified = dataset_fp is not None and meta.get("dataset") == dataset_fp
            if not self.force:
                self._warn_if_configured_otherwise(meta.get("expression_settings"), run)
            if self.force:  # forced on: from now on the run is of this expression and data
                meta["expression"] = run.expression_fingerprint
                if dataset_fp is not None:
                    meta["dataset"] = dataset_fp
            if self.force or "expression_settings" not in meta:
                meta["expression_settings"] = run.expression_settings
        else:
            meta = {
                "run_id": uuid.uuid4().hex,
                "created_at": _now(),
                "expression": run.expression_fingerprint,
                "expression_settings": run.expression_settings,
                "dataset": dataset_fp,
                "total": run.total,
                "model": run.model,
                "items_per_job": run.items_per_job,
            }
        meta.update({"status": "running", "last_updated": _now(), "max_cost": run.max_cost})
        if run.total is not None and not run.indexed:
            meta["total"] = run.total
        self.store.write_meta(meta)
        run.run_id = str(meta["run_id"])
        totals = self.store.totals()
        failed = 0 if self.retry_failed else totals.failed
        skipped = (SUCCEEDED,) if self.retry_failed else FINISHED
        restorable = totals.succeeded if self.retry_failed else totals.finished
        self._finished = _FinishedPages(self.store, skipped) if restorable else None
        run.store = self.store
        run.begin_from(
            succeeded=totals.succeeded,
            failed=failed,
            spent=totals.cost,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            items=totals.finished,
            models=self.store.usage_by_model(),
        )
        run.restorable = self._finished is not None
        if run.replay_restored and self._finished is not None:
            self._replay = self.store.items(skipped)

    def _check_same(self, meta: dict[str, Any], run: RunContext, dataset_fp: str | None) -> None:
        if self.force:
            return
        where = self.store.location
        if meta.get("expression") != run.expression_fingerprint:
            raise RunMismatchError(
                f"the run in {where} was started with another expression or other "
                f"parameters ({meta.get('expression')!r}, now {run.expression_fingerprint!r}); "
                f"use a new run directory, or force it ({FORCE}) to go on"
            )
        stored = meta.get("dataset")
        if stored is not None and dataset_fp is not None and stored != dataset_fp:
            differs = self._first_differing(run.dataset)
            if differs is not None:
                raise RunMismatchError(
                    f"the run in {where} was started with another dataset (its item "
                    f"{differs} differs); use a new run directory, or force it ({FORCE}) to "
                    f"go on"
                )
            meta["dataset"] = dataset_fp  # grown (or cut) with its items the same: go on

    def _first_differing(self, dataset: Sequence[Any]) -> int | None:
        """The first item the run recorded that ``dataset`` holds otherwise, or None: a
        dataset grown after a trial on its first items (``data[:20]``, then ``data``)
        is the same run, though its fingerprint as a whole is not the same."""
        for record in paged(self.store, ()):
            if record.index >= len(dataset):
                break
            if fingerprint(dumps(dataset[record.index])) != record.fingerprint:
                return record.index
        return None

    def _warn_if_configured_otherwise(self, stored: Any, run: RunContext) -> None:
        """An instance configured otherwise than the one the run started with (the kwargs
        would be refused): warned, not refused, since an attribute may be a counter or
        other state the instance changes itself."""
        now = run.expression_settings
        if not isinstance(stored, dict) or now is None:
            return
        changed = [
            f"{key} {stored.get(key)!r}, now {now.get(key)!r}"
            for key in sorted(set(stored) | set(now))
            if stored.get(key) != now.get(key)
        ]
        if changed:
            logger.warning(
                "symbatcher: resuming the run in %s with an expression instance configured "
                "otherwise (%s); the items it finished keep the results they had. Use a new "
                "run directory to run them all with this configuration",
                self.store.location,
                "; ".join(changed),
            )

    def restore(self, item: ItemContext) -> Restored | None:
        """Called in dataset order, so stored results are read with one forward cursor."""
        finished = self._finished
        entry = None if finished is None else finished.get(item.index)
        if finished is None or entry is None:
            return None
        _, stored_fp = entry
        if self._verified:
            item.fingerprint = stored_fp  # the whole dataset matched already
        elif item.fingerprint is None:
            encode_input(item)
        if stored_fp != item.fingerprint and not self.force:
            raise RunMismatchError(
                f"item {item.index} of the dataset differs from the one the run in "
                f"{self.store.location} processed; the dataset changed. Use a new run "
                f"directory, or force it ({FORCE}) to go on"
            )
        if stored_fp != item.fingerprint:
            return None  # forced: run the changed item again
        replay = self._replay
        if replay is None:
            return Restored(None)
        if finished.last is not None and item.index >= finished.last:
            self._replay = None  # the last one: let go of the read snapshot
        outcome = None
        for record in replay:
            if record.index >= item.index:
                if record.index == item.index:
                    outcome = _outcome_of(record)
                break
        if self._replay is None:
            replay.close()  # type: ignore[attr-defined]
        return Restored(outcome)

    def on_item_start(self, item: ItemContext) -> None:
        text = encode_input(item)
        assert item.fingerprint is not None
        self.store.item_started(
            ItemRecord(
                index=item.index,
                fingerprint=item.fingerprint,
                input=text,
                job=item.job,
                started_at=item.started_at,
            )
        )

    def on_call_done(self, call: CallContext) -> None:
        record = call.record
        used = record.prompt_tokens or record.completion_tokens or record.cost
        if call.item is not None and (used or record.model is not None):
            self.store.add_call(
                call.item.index,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost,
                record.model,
            )

    def on_item_done(self, item: ItemContext, outcome: Any) -> Future[None] | None:
        """The record goes to the store's writer; the run hands the outcome on when the
        returned future says it is durable. An item the run's stop cut short stays as it
        was stored at its start (running), which a resume runs again."""
        if isinstance(outcome, ItemPending):
            return None
        assert item.fingerprint is not None
        fields: dict[str, Any]
        if isinstance(outcome, ItemError):
            status = FAILED
            fields = {
                "error_type": outcome.type,
                "error_message": outcome.message,
                "error_traceback": outcome.traceback,
            }
        else:
            status, fields = SUCCEEDED, {"result": dumps_ordered(to_jsonable(outcome))}
        record = ItemRecord(
            item.index,
            item.fingerprint,
            status,
            attempts=max(item.attempts, 1),
            completed_at=time.time(),
            **fields,
        )
        return self.store.item_finished(record)

    def on_end(self, run: RunContext) -> None:
        try:
            self.store.write_meta({"status": run.status, "last_updated": _now()})
        finally:
            self._replay = self._finished = None
            self.store.close()


def _outcome_of(record: ItemRecord) -> Any:
    if record.status == SUCCEEDED:
        return loads(record.result)
    return ItemError(
        index=record.index,
        type=record.error_type or "Exception",
        message=record.error_message or "",
        traceback=record.error_traceback or "",
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
