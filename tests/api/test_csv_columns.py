"""The service's CSV pages: a job's columns are found once while its store is unchanged,
not once per page (a client paging through a job of millions read it whole per page)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from symbatcher.api.app import CsvColumns, _csv_lines
from symbatcher.store import export
from symbatcher.store.sqlite import SQLiteStore
from tests.store.synthetic import big_run


def test_pages_of_an_unchanged_job_share_one_pass_and_a_write_makes_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[Path] = []
    of = export.CsvTable.of.__func__  # type: ignore[attr-defined]

    def counted(cls: Any, store: Any) -> Any:
        passes.append(store.path)
        return of(cls, store)

    monkeypatch.setattr(export.CsvTable, "of", classmethod(counted))
    run = big_run(tmp_path / "run", 50)
    columns = CsvColumns()
    pages = [list(_csv_lines(run, offset, 10, columns)) for offset in range(0, 50, 10)]
    assert len(passes) == 1
    assert {page[0] for page in pages} == {pages[0][0]}  # every page has the header
    assert [len(page) for page in pages] == [11] * 5
    assert pages[4][-1].startswith("49,succeeded,input 49,output 49,")

    with sqlite3.connect(run / "state.sqlite") as conn:  # the job goes on: a new output
        conn.execute(
            "UPDATE items SET status = 'succeeded', result = ?, error_type = NULL, "
            "error_message = NULL WHERE idx = 0",
            ('{"label": "bug"}',),
        )
    conn.close()
    page = list(_csv_lines(run, 0, 2, columns))
    assert len(passes) == 2  # the store changed: its columns found again
    assert "output.label" in page[0] and page[1].startswith("0,succeeded,input 0,,bug,")


def test_only_the_latest_jobs_columns_are_kept(tmp_path: Path) -> None:
    columns = CsvColumns(size=2)
    runs = [big_run(tmp_path / f"run{n}", 3) for n in range(3)]
    tables = [columns.of(SQLiteStore(run)) for run in runs]
    assert columns.of(SQLiteStore(runs[2])) is tables[2]  # kept
    assert columns.of(SQLiteStore(runs[0])) is not tables[0]  # the oldest went
