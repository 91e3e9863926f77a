"""Checkpoint: every finished item durable; resume skips what is done and checks identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symbatcher import BatchScheduler, ItemError
from symbatcher.errors import RunMismatchError
from symbatcher.hooks import Budget, Checkpoint, Cost
from symbatcher.hooks.base import ItemContext
from symbatcher.store import SQLiteStore, load_snapshot
from symbatcher.testing import SimulatedEngine
from tests.expressions import NestedExpression, TestExpression

PRICES = {"simulated": (1.0, 2.0)}


def _run(run_dir: Path, dataset: list[str], **checkpoint: object) -> object:
    scheduler = BatchScheduler(hooks=[Checkpoint(run_dir, **checkpoint), Cost(PRICES)])  # type: ignore[arg-type]
    return scheduler(expr=TestExpression, dataset=dataset, num_workers=8, batch_size=4)


def test_a_finished_run_is_not_run_again(tmp_path: Path, engine: SimulatedEngine) -> None:
    data = [f"item{i}" for i in range(40)]
    first = _run(tmp_path / "run", data)
    assert engine.call_count == 40
    again = _run(tmp_path / "run", data)
    assert engine.call_count == 40  # nothing paid twice
    assert again.stats.restored == 40 and again.stats.status == "completed"  # type: ignore[attr-defined]
    assert [str(v) for v in first] == list(again)  # type: ignore[attr-defined]
    assert all(f"item{i}" in again[i] for i in range(40))  # type: ignore[index]


def test_failed_items_are_kept_then_rerun_only_when_asked(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    engine.fail_on = "item3\n"
    data = [f"item{i}" for i in range(10)]
    first = _run(tmp_path / "run", data)
    assert isinstance(first[3], ItemError)  # type: ignore[index]
    again = _run(tmp_path / "run", data)
    assert isinstance(again[3], ItemError) and "prompt matched" in again[3].message  # type: ignore[index]
    assert engine.call_count == 10
    engine.fail_on = None
    retried = _run(tmp_path / "run", data, retry_failed=True)
    assert engine.call_count == 11
    assert "item3" in retried[3]  # type: ignore[index]
    assert retried.stats.restored == 9  # type: ignore[attr-defined]


def test_interrupted_items_run_again(tmp_path: Path, engine: SimulatedEngine) -> None:
    data = [f"item{i}" for i in range(6)]
    _run(tmp_path / "run", data)
    with SQLiteStore(tmp_path / "run") as store:  # as if the process died mid-item
        conn = store._conn
        assert conn is not None
        conn.execute("UPDATE items SET status = 'running', result = NULL WHERE idx IN (1, 4)")
    engine.reset()
    again = _run(tmp_path / "run", data)
    assert engine.call_count == 2
    assert {c.split("\n")[1] for c in engine.calls} == {"item1", "item4"}
    assert "item4" in again[4]  # type: ignore[index]


@pytest.mark.parametrize("retry_failed", [False, True])
@pytest.mark.parametrize("page", [3, 4096])
def test_a_resume_reads_the_finished_items_a_page_at_a_time(
    tmp_path: Path,
    engine: SimulatedEngine,
    monkeypatch: pytest.MonkeyPatch,
    page: int,
    retry_failed: bool,
) -> None:
    from symbatcher.hooks import checkpoint

    monkeypatch.setattr(checkpoint._FinishedPages, "PAGE", page)
    data = [f"item{i}" for i in range(60)]
    _run(tmp_path / "run", data)
    running, failed = {2, 3, 4, 17, 18, 40, 59}, {0, 9, 10, 11, 12, 30, 58}
    with SQLiteStore(tmp_path / "run") as store:  # as if the process died mid-item
        conn = store._conn
        assert conn is not None
        listed = lambda indices: ", ".join(map(str, indices))  # noqa: E731
        conn.execute(f"UPDATE items SET status = 'running' WHERE idx IN ({listed(running)})")
        conn.execute(
            "UPDATE items SET status = 'failed', result = NULL, error_type = 'ValueError', "
            f"error_message = 'bad' WHERE idx IN ({listed(failed)})"
        )
    engine.reset()
    again = _run(tmp_path / "run", data, retry_failed=retry_failed)
    rerun = running | failed if retry_failed else running
    assert sorted(int(c.split("\n")[1][4:]) for c in engine.calls) == sorted(rerun)
    for i in range(60):
        if i in failed and not retry_failed:
            assert isinstance(again[i], ItemError)  # type: ignore[index]
        else:
            assert f"\nitem{i}\n" in str(again[i])  # type: ignore[index]
    assert again.stats.restored == 60 - len(rerun)  # type: ignore[attr-defined]


def test_another_dataset_or_expression_is_refused_unless_forced(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    data = [f"item{i}" for i in range(5)]
    _run(tmp_path / "run", data)
    with pytest.raises(RunMismatchError, match="another dataset"):
        _run(tmp_path / "run", [*data[:4], "changed"])
    scheduler = BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])
    with pytest.raises(RunMismatchError, match="another expression"):
        scheduler(expr=NestedExpression, dataset=data, num_workers=2)
    assert engine.call_count == 5  # refused before any engine call
    forced = _run(tmp_path / "run", [*data[:4], "changed"], force=True)
    assert "changed" in forced[4]  # type: ignore[index]
    assert engine.call_count == 6
    again = _run(tmp_path / "run", [*data[:4], "changed"])  # forced once, then it is the run's
    assert again.stats.restored == 5 and engine.call_count == 6  # type: ignore[attr-defined]


class Styled(TestExpression):
    def __init__(self, style: str = "short", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.style = style
        self.seen: list[str] = []  # state the instance keeps: not its configuration
        self.calls = 0  # nor a counter, unless it differs when the run starts


def test_an_instance_configured_otherwise_is_warned_of_on_resume(
    tmp_path: Path, engine: SimulatedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    data = [f"item{i}" for i in range(4)]

    def resume(expr: object, **checkpoint: bool) -> None:
        BatchScheduler(hooks=[Checkpoint(tmp_path / "run", **checkpoint)])(
            expr=expr, dataset=data, num_workers=2
        )

    resume(Styled("short"))
    resume(Styled("short"))  # the same configuration: nothing to say
    assert "configured otherwise" not in caplog.text
    resume(Styled("long"))  # finished items keep what they had: said, not refused
    warned = [r.getMessage() for r in caplog.records if "configured otherwise" in r.getMessage()]
    assert len(warned) == 1 and "(style 'short', now 'long')" in warned[0]
    assert str(tmp_path / "run") in warned[0] and engine.call_count == 4
    caplog.clear()
    resume(Styled("long"), force=True)  # forced on: from now on it is the run's
    resume(Styled("long"))
    assert "configured otherwise" not in caplog.text


def test_a_list_grown_after_a_trial_on_its_first_items_goes_on(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    data = [f"item{i}" for i in range(10)]
    _run(tmp_path / "run", data[:3])  # a trial
    grown = _run(tmp_path / "run", data)
    assert grown.stats.restored == 3 and engine.call_count == 10  # type: ignore[attr-defined]
    assert all(x in str(r) for r, x in zip(grown, data, strict=True))  # type: ignore[call-overload]
    again = _run(tmp_path / "run", data)  # now the run's dataset as a whole
    assert again.stats.restored == 10 and engine.call_count == 10  # type: ignore[attr-defined]
    with pytest.raises(RunMismatchError, match=r"another dataset \(its item 1 differs\)"):
        _run(tmp_path / "run", [data[0], "changed", *data[2:], "more"])
    assert engine.call_count == 10  # refused before any engine call


def test_a_changed_generator_is_caught_at_the_first_changed_item(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    _run(tmp_path / "run", [f"item{i}" for i in range(5)])
    scheduler = BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])
    changed = (f"item{i}" if i != 2 else "other" for i in range(5))
    with pytest.raises(RunMismatchError, match="item 2 of the dataset differs"):
        scheduler(expr=TestExpression, dataset=changed, num_workers=2)


def test_snapshot_shows_items_status_cost_and_pending(
    tmp_path: Path, engine: SimulatedEngine
) -> None:
    data = [f"item{i}" for i in range(30)]
    scheduler = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Budget(0.0002), Cost(PRICES)])
    results = scheduler(expr=TestExpression, dataset=data, num_workers=2, batch_size=2)
    assert results.status == "budget_reached"
    view = load_snapshot(tmp_path / "run")
    assert view["status"] == "budget_reached" and view["max_cost"] == 0.0002
    assert view["model"] == "simulated" and view["total_items"] == 30
    items = [item for job in view["jobs"] for item in job["items"]]
    assert [item["original_index"] for item in items] == list(range(30))
    done = [item for item in items if item["status"] == "succeeded"]
    assert done and all(item["cost"] > 0 and item["completed_at"] for item in done)
    assert items[-1]["status"] == "pending"
    assert view["total_cost"] == pytest.approx(sum(item["cost"] for item in items))


def test_an_input_is_kept_in_its_own_key_order_and_known_by_its_sorted_one(
    engine: SimulatedEngine, tmp_path: Path
) -> None:
    import dataclasses

    from symbatcher.hooks.checkpoint import encode_input
    from symbatcher.store.codec import dumps, fingerprint

    @dataclasses.dataclass
    class Row:
        text: str
        id: int

    for value, stored in (
        ({"b": 1, "a": 2}, '{"b":1,"a":2}'),
        (Row("x", 1), '{"text":"x","id":1}'),
    ):
        item = ItemContext(0, value, None)  # type: ignore[arg-type]
        assert encode_input(item) == stored  # shown and exported in the data's order
        assert item.fingerprint == fingerprint(dumps(value))  # known as before 0.7.6
    first = BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])
    first(expr=TestExpression, dataset=[{"b": 1, "a": 2}, {"c": 3}], num_workers=2)
    calls = engine.call_count
    again = BatchScheduler(hooks=[Checkpoint(tmp_path / "run")])
    results = again(expr=TestExpression, dataset=[{"a": 2, "b": 1}, {"c": 3}], num_workers=2)
    assert engine.call_count == calls and results.stats.restored == 2  # the same items
    assert [json.loads(r.input) for r in SQLiteStore(tmp_path / "run").items(())] == [
        {"b": 1, "a": 2},
        {"c": 3},
    ]
