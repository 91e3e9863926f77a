"""ItemError, RunResults and RunStats: what a run hands back."""

from __future__ import annotations

from symbatcher import ItemError, RunResults, RunStats


def make_error(index: int) -> ItemError:
    try:
        raise ValueError(f"bad item {index}")
    except ValueError as exc:
        return ItemError.from_exception(index, exc)


def test_item_error_names_type_message_and_traceback() -> None:
    error = make_error(3)
    assert (error.index, error.type, error.message) == (3, "ValueError", "bad item 3")
    assert "Traceback" in error.traceback and "make_error" in error.traceback
    assert str(error) == "item 3 failed: ValueError: bad item 3"
    assert isinstance(error.exception, ValueError)


def test_results_behave_like_a_list() -> None:
    error = make_error(1)
    results = RunResults(["a", error, "c"], RunStats(items=3, succeeded=2, failed=1))
    assert len(results) == 3 and results[0] == "a" and results[-1] == "c"
    assert results[0:2] == ["a", error] and list(results) == ["a", error, "c"]
    assert results == ["a", error, "c"]
    assert results.errors == [error] and not results.ok
    assert "3 items, 1 failed" in repr(results)


def test_stats_figures() -> None:
    stats = RunStats(
        items=10, succeeded=9, failed=1, engine_calls=20, batches=5, batch_size=8, wall_time=2.0
    )
    assert stats.mean_batch_size == 4.0 and stats.mean_batch_fill == 0.5
    assert stats.items_per_second == 5.0 and stats.calls_per_second == 10.0
    assert stats.as_dict()["mean_batch_fill"] == 0.5
    assert "10 items (9 ok, 1 failed)" in stats.summary()
    assert "(fill 50%)" in stats.summary() and stats.as_dict()["max_inflight_batches"] is None
    capped = RunStats(engine_calls=20, batches=5, batch_size=8, max_inflight_batches=4)
    assert "(fill 50%, at most 4 at once)" in capped.summary()
    assert capped.as_dict()["max_inflight_batches"] == 4
    empty = RunStats()
    assert empty.mean_batch_size == 0.0 and empty.items_per_second == 0.0
    assert empty.summary().endswith(", no engine calls")  # not "0 calls in 0 batches (0%)"
