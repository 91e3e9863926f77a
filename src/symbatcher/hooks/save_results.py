"""SaveResults: the run's results as ``results.jsonl`` and, optionally, raw engine answers.

``results.jsonl`` (index, status, input, output, error, tokens, cost per line, dataset
order) is written from the run store when the run ends, streamed, so it also holds what
earlier runs of a resumed run did. ``raw=True`` keeps each item's raw engine responses in
``raw/<index>.json`` as the item finishes. Needs a :class:`Checkpoint` (the store).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symbatcher.errors import SymbatcherError
from symbatcher.hooks.base import CallContext, Hook, ItemContext, RunContext
from symbatcher.store.codec import to_jsonable
from symbatcher.store.export import export_results

RESULTS_FILE = "results.jsonl"


class SaveResults(Hook):
    start_order = 10

    def __init__(self, directory: str | Path, *, raw: bool = False) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.raw = raw
        self.rows_written = 0

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS_FILE

    def on_start(self, run: RunContext) -> None:
        if run.store is None:
            raise SymbatcherError(
                "SaveResults writes from the run's store: add a Checkpoint(run_dir) hook"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.raw:
            (self.directory / "raw").mkdir(exist_ok=True)

    def around_call(self, call: CallContext, proceed: Callable[[], Any]) -> Any:
        answer = proceed()
        if self.raw:
            metadata = answer[1] if isinstance(answer, tuple) and len(answer) == 2 else {}
            raw = metadata.get("raw_output", metadata) if isinstance(metadata, dict) else None
            call.record.raw = to_jsonable(raw)
        return answer

    def on_item_done(self, item: ItemContext, outcome: Any) -> None:
        if not self.raw:
            return
        path = self.directory / "raw" / f"{item.index:09d}.json"
        partial = path.with_name(path.name + ".partial")
        calls = [{"engine": c.engine, "response": c.raw} for c in item.calls]
        partial.write_text(json.dumps(calls, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)

    def on_end(self, run: RunContext) -> None:
        if run.store is not None:
            self.rows_written = export_results(run.store, self.results_path)
