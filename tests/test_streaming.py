"""imap: outcomes as completed, a bounded window over huge generators, early stop."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

from symai import Expression, Symbol

from symbatcher import BatchScheduler, ItemError
from symbatcher.testing import SimulatedEngine, use_engine
from tests.expressions import NestedExpression


def test_imap_yields_every_index_once_with_its_own_answer() -> None:
    data = [f"<s-{i:04d}>" for i in range(300)]
    with use_engine(SimulatedEngine(latency=(0.0, 0.004), seed=3)):
        stream = BatchScheduler().imap(expr=NestedExpression, dataset=iter(data), num_workers=20)
        seen = {}
        for index, outcome in stream:
            assert index not in seen
            seen[index] = outcome
    assert sorted(seen) == list(range(300))
    assert all(data[i] in str(o) and not isinstance(o, ItemError) for i, o in seen.items())
    assert stream.stats.items == 300 and stream.stats.engine_calls == 600


class Counting:
    """A generator-like dataset that tracks how far the scheduler has read ahead."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            self.pulled += 1
            yield f"<g-{i}>"


class Cheap(Expression):
    """One real symai query every 25th item; the rest return at once (keeps 100k fast)."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        if int(input[3:-1]) % 25 == 0:
            return Symbol(input).query("Summarize this input")
        return input


def test_generator_of_100k_items_runs_in_bounded_memory() -> None:
    n, workers = 100_000, 8
    window = 2 * workers
    dataset = Counting(n)
    consumed = 0
    max_ahead = 0
    samples: dict[int, int] = {}
    with use_engine(SimulatedEngine(record_calls=False)) as eng:
        tracemalloc.start()
        try:
            for _index, outcome in BatchScheduler().imap(
                expr=Cheap, dataset=dataset, num_workers=workers
            ):
                consumed += 1
                assert not isinstance(outcome, ItemError)
                max_ahead = max(max_ahead, dataset.pulled - consumed)
                if consumed in (20_000, 99_000):
                    gc.collect()
                    samples[consumed] = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert consumed == n and dataset.pulled == n
    assert max_ahead <= window  # never more than the window read ahead of the consumer
    assert eng.call_count == n // 25
    growth = samples[99_000] - samples[20_000]
    assert growth < 512 * 1024, f"memory grew by {growth} bytes over 79,000 items"


def test_closing_a_stream_early_stops_the_run_and_joins_its_threads() -> None:
    dataset = Counting(10_000)
    with use_engine(SimulatedEngine()) as eng:
        with BatchScheduler().imap(expr=NestedExpression, dataset=dataset, num_workers=4) as stream:
            for count, _ in enumerate(stream, start=1):
                if count == 10:
                    break
        assert dataset.pulled <= 10 + 8
        assert eng.call_count <= 2 * (10 + 8)
        from symai.functional import EngineRepository

        assert EngineRepository()._engines["neurosymbolic"] is eng


def test_a_stream_never_iterated_starts_nothing() -> None:
    dataset = Counting(5)
    with use_engine(SimulatedEngine()) as eng:
        stream = BatchScheduler().imap(expr=NestedExpression, dataset=dataset)
        stream.close()
    assert dataset.pulled == 0 and eng.call_count == 0
