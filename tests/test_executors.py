"""How batches reach engines: list protocols, symai 1.x engines, malformed answers."""

from __future__ import annotations

from typing import Any

import pytest

from symbatcher import BatchProtocolError, BatchScheduler, ItemError
from symbatcher.executors import ListExecutor, PlainExecutor, executor_for, normalize_batch
from symbatcher.testing import LegacyBatchEngine, SimulatedBatchEngine, SimulatedEngine, use_engine
from tests.expressions import NestedExpression


def test_engine_shape_picks_the_executor() -> None:
    assert isinstance(executor_for(SimulatedEngine()), PlainExecutor)
    assert isinstance(executor_for(SimulatedBatchEngine()), ListExecutor)
    assert isinstance(executor_for(LegacyBatchEngine()), ListExecutor)


def test_legacy_symai_1x_batch_engine_runs_batches() -> None:
    legacy = LegacyBatchEngine(SimulatedBatchEngine(fail_on="<bad>"))
    data = [f"<l-{i}>" for i in range(20)] + ["<bad>"]
    with use_engine(legacy):
        results = BatchScheduler()(expr=NestedExpression, dataset=data, num_workers=8, batch_size=4)
    assert all(d in str(r) for d, r in zip(data[:-1], results, strict=False))
    assert isinstance(results[-1], ItemError) and "prompt matched" in results[-1].message
    assert max(legacy.inner.batches) <= 4 and sum(legacy.inner.batches) == 41


def test_list_engine_single_call_outside_a_run() -> None:
    from symai import Symbol

    with use_engine(LegacyBatchEngine()) as legacy:
        BatchScheduler()(expr=NestedExpression, dataset=[], num_workers=1)
        # outside a run a 1.x engine would get a bare argument; through a binding it
        # gets a one-call batch. Bind, then call from this (non-run) thread:
        from symbatcher.binding import bound_engines

        with bound_engines(("neurosymbolic",)):
            answer = Symbol("<solo>").query("Summarize this input")
    assert "<solo>" in str(answer) and legacy.inner.batches == [1]


class Miscounting(SimulatedBatchEngine):
    def forward_batch(self, arguments: Any) -> Any:
        return super().forward_batch(arguments)[:-1] if len(arguments) > 1 else "nonsense"


def test_wrong_batch_answers_fail_their_items_with_a_clear_error() -> None:
    with use_engine(Miscounting()):
        results = BatchScheduler(linger=1.0)(
            expr=NestedExpression,
            dataset=[f"<m-{i}>" for i in range(6)],
            num_workers=6,
            batch_size=3,
        )
    assert all(isinstance(r, ItemError) and r.type == "BatchProtocolError" for r in results)
    messages = {r.message for r in results}
    assert any("answered a batch of" in m for m in messages)


@pytest.mark.parametrize(
    "raw, expected, message",
    [
        ("text", 1, "expected a list"),
        ([(["a"], {})], 2, "with 1 results"),
        ([42], 1, "expected \\(outputs, metadata\\)"),
    ],
)
def test_normalize_batch_rejects_bad_shapes(raw: Any, expected: int, message: str) -> None:
    with pytest.raises(BatchProtocolError, match=message):
        normalize_batch(SimulatedBatchEngine(), raw, expected)


def test_normalize_batch_accepts_1x_shapes() -> None:
    error = RuntimeError("x")
    out = normalize_batch(object(), [("a", None), (["b"], {"k": 1}), error, (error, {})], 4)
    assert out == [(["a"], {}), (["b"], {"k": 1}), error, error]
