"""Calls made inside a ``with DynamicEngine(...)`` block during a run are the item's.

symai hands out a DynamicEngine block's engine past its registry, so before 0.7.5 those
calls went to the provider past the run: not counted, not costed, not seen by a budget.
Here the block is symai's own DynamicEngine building symai's own DeepSeek engine, whose
requests go over HTTP to the local server on 127.0.0.1 (``hosted_engines_at``); the run's
bound engine is a simulated one, so every cent of a run's cost is DeepSeek's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from symai import Expression, Symbol
from symai.backend.engines.neurosymbolic.deepseek.models import deepseek_model_spec_for
from symai.components import DynamicEngine
from symai.functional import EngineRepository

from symbatcher import (
    Backoff,
    BatchScheduler,
    Budget,
    CallRetry,
    Checkpoint,
    Cost,
    EngineBinding,
    http_clients,
)
from symbatcher.cli import main
from symbatcher.dollars import usd
from symbatcher.store import ModelUsage, SQLiteStore
from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine
from symbatcher.testing.hosted import hosted_engines_at
from symbatcher.testing.server import LocalServer

MODEL = "deepseek:deepseek-v4-flash"
PRICE = deepseek_model_spec_for(MODEL).pricing
FREE_SIM = {"simulated": (0.0, 0.0)}  # the bound engine's calls cost nothing


class TwoModels(Expression):  # type: ignore[misc]
    """The first step on the run's engine, the second on DeepSeek, switched in for it."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = Symbol(input).query("Describe")
        with DynamicEngine(MODEL, api_key="test-key"):
            second = Symbol(f"{input} | {first}").query("Label")
        return str(second)


@pytest.fixture
def deepseek(local_server: LocalServer) -> Iterator[LocalServer]:
    with hosted_engines_at(local_server.url):
        yield local_server


def items(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


def own_answers(results: Any, data: list[str] | None = None) -> bool:
    """DeepSeek's answer (the server echoes the prompt) holds its item and the bound
    engine's answer for that item (which echoes the item too)."""
    data = data if data is not None else items(len(results))
    return all(
        f"{item} | sim(Data:\n{item}\n" in str(result)
        for item, result in zip(data, results, strict=True)
    )


def same_usage(ours: dict[str, ModelUsage], theirs: dict[str, ModelUsage]) -> bool:
    """The same models, calls and tokens; the cost up to how the sums were rounded."""
    return list(ours) == list(theirs) and all(
        (ours[m].calls, ours[m].tokens) == (theirs[m].calls, theirs[m].tokens)
        and ours[m].cost == pytest.approx(theirs[m].cost)
        for m in ours
    )


def deepseek_cost(server: LocalServer) -> float:
    stats = server.stats()
    return float(
        (stats["prompt_tokens"] * PRICE.input + stats["completion_tokens"] * PRICE.output) / 1e6
    )


@pytest.mark.parametrize("engine_kind", ["plain", "list"])
def test_a_blocks_calls_are_counted_and_costed_at_its_models_price(
    deepseek: LocalServer, engine_kind: str
) -> None:
    sim = SimulatedEngine() if engine_kind == "plain" else SimulatedBatchEngine()
    with use_engine(sim):
        results = BatchScheduler(hooks=[Cost(FREE_SIM)])(
            expr=TwoModels, dataset=items(40), num_workers=8, batch_size=4
        )
    assert results.stats.failed == 0
    assert own_answers(results)
    assert sim.call_count == 40 and deepseek.stats()["ok"] == 40
    assert results.stats.engine_calls == 80
    assert results.stats.plain_calls == (80 if engine_kind == "plain" else 40)
    if engine_kind == "list":  # the batches and their fill are the list engine's alone
        assert results.stats.batches == len(sim.batches)
        assert results.stats.mean_batch_size == pytest.approx(40 / len(sim.batches))
        line = results.stats.calls_line()
        assert line.startswith(f"80 engine calls: 40 in {len(sim.batches)} batches, mean")
        assert line.endswith("; 40 each on its own (a plain engine)")
    else:
        assert results.stats.batches == 0
        assert results.stats.calls_line() == "80 engine calls, each on its own (a plain engine)"
    assert results.stats.cost == pytest.approx(deepseek_cost(deepseek))
    assert results.stats.cost > 0
    models = results.stats.models  # without a store too: the run's own figures
    assert list(models) == [MODEL, "simulated"] and models[MODEL].calls == 40
    assert models[MODEL].cost == pytest.approx(results.stats.cost)
    assert results.stats.as_dict()["models"][MODEL]["calls"] == 40


def test_a_budget_stops_a_run_whose_cost_is_in_blocks(deepseek: LocalServer) -> None:
    with use_engine(SimulatedEngine()):
        probe = BatchScheduler(hooks=[Cost(FREE_SIM)])(
            expr=TwoModels, dataset=items(4), num_workers=1
        )
        per_item = probe.stats.cost / 4
        deepseek.configure()  # counters back to 0
        results = BatchScheduler(hooks=[Cost(FREE_SIM), Budget(per_item * 10.5)])(
            expr=TwoModels, dataset=items(60), num_workers=4
        )
    assert results.stats.stop_reason is not None and "budget" in results.stats.stop_reason
    sent = deepseek.stats()["requests"]
    assert 10 <= sent < 20  # items in flight when the budget was reached finish
    assert results.stats.cost == pytest.approx(deepseek_cost(deepseek))


def test_under_a_cap_a_blocks_calls_queue_apart_from_the_bound_engines(
    deepseek: LocalServer,
) -> None:
    """With an in-flight cap every call is queued; a list engine's queue must never hand
    a DeepSeek call to the simulated engine, nor the other way round."""
    sim = SimulatedBatchEngine(latency=(0.0, 0.005))
    deepseek.configure(latency=(0.0, 0.01))
    with use_engine(sim):
        results = BatchScheduler(max_inflight_batches=2)(
            expr=TwoModels, dataset=items(60), num_workers=12, batch_size=5
        )
    assert results.stats.failed == 0
    assert own_answers(results)
    assert sim.call_count == 60 and deepseek.stats()["ok"] == 60
    assert max(sim.batches) <= 5


def test_many_workers_with_random_latencies_keep_every_answer_with_its_item(
    deepseek: LocalServer,
) -> None:
    rng = random.Random(5)
    deepseek.configure(latency=(0.0, 0.03), seed=5)
    sim = SimulatedBatchEngine(latency=(0.0, 0.01))
    data = items(300)
    rng.shuffle(data)
    with use_engine(sim):
        results = BatchScheduler()(expr=TwoModels, dataset=data, num_workers=100, batch_size=8)
    assert results.stats.failed == 0
    assert own_answers(results, data)
    assert deepseek.stats()["ok"] == 300 and results.stats.engine_calls == 600


def test_outside_a_run_a_block_gets_symais_engine(deepseek: LocalServer) -> None:
    with use_engine(SimulatedEngine()):
        during: list[Any] = []

        class Peek(Expression):  # type: ignore[misc]
            def forward(self, input: Any, **kwargs: Any) -> Any:
                with DynamicEngine(MODEL, api_key="test-key"):
                    during.append(EngineRepository.get("neurosymbolic"))
                return input

        BatchScheduler()(expr=Peek, dataset=["a"], num_workers=1)
        with DynamicEngine(MODEL, api_key="test-key"):
            after = EngineRepository.get("neurosymbolic")
            answer = Symbol("plain").query("Label")  # the main thread: no run's
    assert isinstance(during[0], EngineBinding)
    assert type(during[0].engine).__name__ == "DeepseekEngine"
    assert not isinstance(after, EngineBinding) and type(after).__name__ == "DeepseekEngine"
    assert "plain" in str(answer)


def test_a_run_directory_keeps_what_each_model_used(deepseek: LocalServer, tmp_path: Path) -> None:
    with use_engine(SimulatedEngine()):
        results = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Cost(FREE_SIM)])(
            expr=TwoModels, dataset=items(30), num_workers=6
        )
    used = SQLiteStore(tmp_path / "run").usage_by_model()
    assert list(used) == [MODEL, "simulated"]  # the costliest first
    assert used[MODEL].calls == used["simulated"].calls == 30
    stats = deepseek.stats()
    assert used[MODEL].tokens == stats["prompt_tokens"] + stats["completion_tokens"]
    assert used[MODEL].cost == pytest.approx(deepseek_cost(deepseek))
    assert used["simulated"].cost == 0.0
    assert results.stats.cost == pytest.approx(used[MODEL].cost)
    assert same_usage(results.stats.models, used)
    with use_engine(SimulatedEngine()):  # resumed: nothing to do, the figures carried over
        again = BatchScheduler(hooks=[Checkpoint(tmp_path / "run"), Cost(FREE_SIM)])(
            expr=TwoModels, dataset=items(30), num_workers=6
        )
    assert again.stats.restored == 30 and again.stats.engine_calls == 0
    assert same_usage(again.stats.models, used)


PIPELINE = f"""
from symai import Expression, Symbol
from symai.components import DynamicEngine


class TwoModels(Expression):
    def forward(self, input, **kwargs):
        first = Symbol(input).query("Describe")
        with DynamicEngine({MODEL!r}, api_key="test-key"):
            return str(Symbol(f"{{input}} | {{first}}").query("Label"))
"""


def test_the_command_line_says_what_each_model_cost(
    deepseek: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "twomodels.py").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("\n".join(f'"item-{i}"' for i in range(20)) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with use_engine(SimulatedEngine()):
        code = main(
            ["run", "twomodels:TwoModels", "in.jsonl", "--run-dir", "run", "--out", "out.jsonl"]
        )
    assert code == 0
    ended = "".join(capsys.readouterr())  # the summary goes where the progress does
    assert main(["status", "run"]) == 0
    status = capsys.readouterr().out
    cost = usd(deepseek_cost(deepseek))
    for out in (ended, status):
        assert f"  {MODEL}: 20 calls, " in out and f" tokens, {cost}\n" in out
        assert "  simulated: 20 calls, " in out
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]
    assert own_answers([row["output"] for row in rows])


def test_a_blocks_calls_are_retried_by_the_run_alone(deepseek: LocalServer) -> None:
    """symai's transport retries each request twice on its own; under a CallRetry they are
    off for a block's engine too, so one retry policy counts and spaces every try."""
    deepseek.configure(error_rate=1.0)
    retry = CallRetry(2, backoff=Backoff(initial=0.01, maximum=0.02), seed=1)
    with use_engine(SimulatedEngine()):
        results = BatchScheduler(hooks=[retry])(expr=TwoModels, dataset=items(6), num_workers=6)
    assert results.stats.failed == 6
    assert deepseek.stats()["requests"] == 12  # two tries each, not two times symai's three
    assert retry.retries == 6
    assert all("injected server error" in str(result) for result in results)


class KeepsItsEngine(Expression):  # type: ignore[misc]
    """Queries in a block and keeps the block's engine, to look at it after the run."""

    engines: ClassVar[list[Any]] = []

    def forward(self, input: Any, **kwargs: Any) -> Any:
        with DynamicEngine(MODEL, api_key="test-key") as engine:
            KeepsItsEngine.engines.append(engine)
            return str(Symbol(input).query("Label"))


def test_a_blocks_engine_has_symais_retries_back_after_each_call(deepseek: LocalServer) -> None:
    KeepsItsEngine.engines = []
    retry = CallRetry(2, backoff=Backoff(initial=0.01, maximum=0.02), seed=1)
    with use_engine(SimulatedEngine()):
        results = BatchScheduler(hooks=[retry])(
            expr=KeepsItsEngine, dataset=items(8), num_workers=4
        )
    assert results.stats.failed == 0 and len(KeepsItsEngine.engines) == 8
    assert all(engine.client_max_retries is None for engine in KeepsItsEngine.engines)


class OnWhichClient(Expression):  # type: ignore[misc]
    """Queries in a block, then notes whether this worker has a client of its own for
    blocks, and what the block's engine holds once the call is over."""

    seen: ClassVar[list[tuple[bool, Any]]] = []

    def forward(self, input: Any, **kwargs: Any) -> Any:
        with DynamicEngine(MODEL, api_key="test-key") as engine:
            answer = str(Symbol(input).query("Label"))
        own = id(http_clients._for_blocks) in getattr(http_clients._local, "clients", {})
        OnWhichClient.seen.append((own, engine.transport_client))
        return answer


@pytest.mark.parametrize("per_thread", [True, False])
def test_a_blocks_calls_go_on_the_workers_own_client(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch, per_thread: bool
) -> None:
    """As the bound engines' do: symai's shared client costs CPU at many workers. Here
    DeepSeek's URL itself points at the server, so the shared client is symai's own."""
    from symai.backend.engines.neurosymbolic.deepseek import engine as deepseek_engine

    url = f"{local_server.url}/v1/chat/completions"
    monkeypatch.setattr(deepseek_engine, "DEEPSEEK_CHAT_COMPLETIONS_URL", url)
    OnWhichClient.seen = []
    with use_engine(SimulatedEngine()):
        results = BatchScheduler(client_per_thread=per_thread)(
            expr=OnWhichClient, dataset=items(12), num_workers=4
        )
    assert results.stats.failed == 0 and local_server.stats()["ok"] == 12
    assert [own for own, _ in OnWhichClient.seen] == [per_thread] * 12
    assert all(client is None for _, client in OnWhichClient.seen)  # symai's, after each call
