"""Progress figures for programs and a terminal bar; results and raw answers on disk."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest

from symbatcher import BatchScheduler
from symbatcher.hooks import Checkpoint, Cost, Progress, ProgressEvent, SaveResults
from symbatcher.testing import SimulatedEngine
from tests.expressions import NestedExpression, TestExpression

PRICES = {"simulated": (1.0, 2.0)}


def test_progress_events_carry_the_run_figures(engine: SimulatedEngine) -> None:
    engine.fail_on = "item2\n"
    events: list[ProgressEvent] = []
    scheduler = BatchScheduler(hooks=[Progress(callback=events.append, interval=0), Cost(PRICES)])
    scheduler(expr=TestExpression, dataset=[f"item{i}" for i in range(10)], num_workers=3)
    last = events[-1]
    assert last.status == "completed" and last.done == last.total == 10
    assert (last.succeeded, last.failed, last.in_flight) == (9, 1, 0)
    assert last.percent == 100.0 and last.tokens > 0 and last.cost > 0
    done = [e.done for e in events]
    assert done == sorted(done) and len(events) >= 10  # one per item at interval 0, and the end
    assert json.dumps(last.as_dict())


def test_progress_bar_shows_done_total_failed_and_cost(engine: SimulatedEngine) -> None:
    out = io.StringIO()
    scheduler = BatchScheduler(hooks=[Progress(show=True, file=out), Cost(PRICES)])
    scheduler(expr=TestExpression, dataset=[f"item{i}" for i in range(5)], num_workers=2)
    text = out.getvalue()
    assert "5/5" in text and "100%" in text and "failed=0" in text and "cost=$" in text


def test_no_bar_when_stderr_is_not_a_terminal(engine: SimulatedEngine, capsys: object) -> None:
    BatchScheduler(hooks=[Progress()])(expr=TestExpression, dataset=["a"], num_workers=1)
    assert capsys.readouterr().err == ""  # type: ignore[attr-defined]


class ZMQInteractiveShell:  # what IPython's get_ipython() gives in a Jupyter kernel
    pass


def test_a_jupyter_kernel_gets_the_bar_though_its_stderr_is_no_terminal(
    engine: SimulatedEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from symbatcher.hooks.progress import in_notebook

    run = lambda: BatchScheduler(hooks=[Progress()])(  # noqa: E731
        expr=TestExpression, dataset=["a", "b"], num_workers=1
    )
    assert not in_notebook()
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("zmqshell"))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert not in_notebook()  # ipykernel imported, but not running this code
    ipython.get_ipython = ZMQInteractiveShell  # type: ignore[attr-defined]
    assert in_notebook()
    run()
    err = capsys.readouterr().err  # no ipywidgets here: tqdm's text bar, redrawn in place
    assert "items: 100%" in err and "2/2" in err


def test_results_jsonl_in_dataset_order_with_raw_answers(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    engine.fail_on = "item3\n"
    data = [f"item{i}" for i in range(12)]
    out = tmp_path / "out"
    scheduler = BatchScheduler(
        hooks=[Checkpoint(tmp_path / "run"), Cost(PRICES), SaveResults(out, raw=True)]
    )
    scheduler(expr=NestedExpression, dataset=data, num_workers=4, batch_size=3)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    assert [r["input"] for r in rows] == data
    assert rows[0]["status"] == "succeeded" and "item0" in rows[0]["output"]
    assert rows[3]["status"] == "failed" and rows[3]["output"] is None
    assert rows[3]["error"]["type"] == "SimulatedEngineError"
    assert all(r["tokens"] > 0 and r["cost"] > 0 for r in rows if r["status"] == "succeeded")
    raw = json.loads((out / "raw" / "000000000.json").read_text())
    assert len(raw) == 2 and raw[0]["engine"] == "neurosymbolic"
    assert raw[0]["response"]["usage"]["total_tokens"] > 0


def test_results_of_a_resumed_run_include_the_earlier_items(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    data = [f"item{i}" for i in range(8)]

    def run() -> None:
        BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), SaveResults(tmp_path / "out")])(
            expr=TestExpression, dataset=data, num_workers=2
        )

    run()
    run()
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(8))
    assert engine.call_count == 8
