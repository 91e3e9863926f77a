"""A run that brings its own engine (``BatchScheduler({"neurosymbolic": engine})``): symai's
registry is left alone, only the run's threads reach that engine, and runs on different
engines share one process. Hosted models are symai's own DeepSeek engine talking HTTP to
the local server on 127.0.0.1 (``hosted_engines_at``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from symai import Expression, Symbol
from symai.backend.engines.neurosymbolic.deepseek.models import deepseek_model_spec_for
from symai.components import DynamicEngine
from symai.functional import EngineRepository

from symbatcher import BatchManager, BatchScheduler, Cost, ItemError
from symbatcher.errors import EngineNotAvailableError
from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine
from symbatcher.testing.hosted import hosted_engines_at
from symbatcher.testing.server import LocalServer

MODEL = "deepseek:deepseek-v4-flash"
PRICE = deepseek_model_spec_for(MODEL).pricing


class Chain(Expression):  # type: ignore[misc]
    """Two dependent calls: the second's prompt holds the first's answer."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        first = Symbol(str(input)).query("Describe")
        return str(Symbol(f"{input} | {first}").query("Label"))


class _Tag:
    """Answers that say which engine gave them."""

    tag = ""
    answering = threading.Event()  # set by the first answer of any

    def answer(self, prompt: str) -> tuple[list[str], dict[str, Any]]:
        _Tag.answering.set()
        answers, metadata = super().answer(prompt)  # type: ignore[misc]
        return [f"{self.tag}:{answers[0]}"], metadata


class Tagged(_Tag, SimulatedEngine):
    def __init__(self, tag: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag


class TaggedBatch(_Tag, SimulatedBatchEngine):
    def __init__(self, tag: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag


@pytest.fixture
def deepseek(local_server: LocalServer) -> Iterator[LocalServer]:
    with hosted_engines_at(local_server.url):
        yield local_server


def test_runs_on_different_engines_at_once_each_get_their_own_and_the_registry_none() -> None:
    registry_engine = SimulatedEngine()
    own: dict[str, Any] = {  # random latencies: the runs' calls interleave
        "a": Tagged("a", latency=(0.0, 0.004)),
        "b": TaggedBatch("b", latency=(0.0, 0.004)),
        "c": Tagged("c", latency=(0.0, 0.004)),
    }
    results: dict[str, Any] = {}
    failures: list[BaseException] = []
    get_before = EngineRepository.__dict__["get"]

    def run(tag: str) -> None:
        try:
            scheduler = BatchScheduler({"neurosymbolic": own[tag]})
            data = [f"{tag}-{i}" for i in range(120)]
            results[tag] = scheduler(expr=Chain, dataset=data, num_workers=40, batch_size=6)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with use_engine(registry_engine):
        threads = [threading.Thread(target=run, args=(tag,)) for tag in own]
        for thread in threads:
            thread.start()
        _Tag.answering.wait(timeout=30)
        # a thread of no run, while the runs go on: the registry's engine, as ever
        assert str(Symbol("outside").query("x")).startswith("sim(")
        for thread in threads:
            thread.join()
        assert EngineRepository.get("neurosymbolic") is registry_engine
    assert not failures
    assert registry_engine.call_count == 1  # the one call from outside any run
    for tag, engine in own.items():
        outcomes = list(results[tag])
        assert not [o for o in outcomes if isinstance(o, ItemError)]
        for i, outcome in enumerate(outcomes):
            # both calls answered by the run's engine, for its own item: none crossed
            assert outcome.startswith(f"{tag}:") and f"{tag}-{i} | {tag}:" in outcome
        assert results[tag].stats.engine_calls == 240
        assert engine.call_count == 240
        assert all(f"{tag}-" in prompt for prompt in engine.calls)  # its run's only
    assert max(own["b"].batches) <= 6 and len(own["b"].batches) < 240  # batched
    assert EngineRepository.__dict__["get"] is get_before  # symai's static method, back


def test_an_own_engine_needs_nothing_in_the_registry_and_its_run_leaves_it_so() -> None:
    repository = EngineRepository()
    saved = dict(repository._engines)
    repository._engines.pop("neurosymbolic", None)
    try:
        engine = SimulatedEngine()
        results = BatchScheduler({"neurosymbolic": engine})(
            expr=Chain, dataset=["x", "y"], num_workers=2
        )
        assert [str(r).count("sim(") for r in results] == [2, 2]
        assert "neurosymbolic" not in repository._engines
    finally:
        repository._engines.clear()
        repository._engines.update(saved)


def test_the_engine_lookup_is_put_back_after_a_failed_run() -> None:
    get_before = EngineRepository.__dict__["get"]

    class Boom(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            Symbol(input).query("x")
            raise RuntimeError(f"boom {input}")

    scheduler = BatchScheduler({"neurosymbolic": SimulatedEngine()}, error_handling="fail_fast")
    with pytest.raises(RuntimeError, match="boom"):
        scheduler(expr=Boom, dataset=["a", "b", "c"], num_workers=2)
    assert EngineRepository.__dict__["get"] is get_before
    assert isinstance(EngineRepository.__dict__["get"], staticmethod)


def test_a_dynamic_engine_block_still_comes_first(deepseek: LocalServer) -> None:
    class Switch(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            first = Symbol(input).query("Describe")
            with DynamicEngine(MODEL, api_key="test-key"):
                return str(Symbol(f"{input} | {first}").query("Label"))

    own = Tagged("own")
    results = BatchScheduler({"neurosymbolic": own}, hooks=[Cost({"simulated": (0, 0)})])(
        expr=Switch, dataset=[f"i{n}" for n in range(10)], num_workers=5
    )
    assert results.stats.failed == 0
    assert own.call_count == 10 and deepseek.stats()["ok"] == 10
    assert all(f"i{n} | own:" in str(r) for n, r in enumerate(results))
    assert results.stats.engine_calls == 20 and next(iter(results.stats.models)) == MODEL


def test_a_model_by_name_is_symai_s_engine_for_it_costed_at_its_price(
    deepseek: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    registry_engine = SimulatedEngine()
    with use_engine(registry_engine):
        results = BatchScheduler({"neurosymbolic": MODEL}, hooks=[Cost()])(
            expr=Chain, dataset=[f"r{n}" for n in range(12)], num_workers=6
        )
    assert results.stats.failed == 0 and registry_engine.call_count == 0
    stats = deepseek.stats()
    assert stats["ok"] == 24
    expected = stats["prompt_tokens"] * PRICE.input + stats["completion_tokens"] * PRICE.output
    assert results.stats.cost == pytest.approx(float(expected) / 1e6) and results.stats.cost > 0
    assert list(results.stats.models) == [MODEL]


def test_a_manager_takes_its_model_by_name(
    deepseek: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    manager = BatchManager(
        Chain,
        [f"r{n}" for n in range(8)],
        state_path=tmp_path / "run",
        engines={"neurosymbolic": MODEL},
    )
    assert manager.run(print_progress=False).failed == 0
    assert all(f"r{n} |" in str(r) for n, r in enumerate(manager.results()))
    assert manager.stats.models[MODEL].calls == 16 and deepseek.stats()["ok"] == 16


def test_a_bad_engine_is_named_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(EngineNotAvailableError, match="did you mean 'deepseek:deepseek-v4"):
        BatchScheduler({"neurosymbolic": "deepseek-v4-flash"})
    with pytest.raises(EngineNotAvailableError, match="DEEPSEEK_API_KEY is not set"):
        BatchScheduler({"neurosymbolic": MODEL})
    with pytest.raises(TypeError, match=r"engines\['neurosymbolic'\] must be an engine instance"):
        BatchScheduler({"neurosymbolic": SimulatedEngine})
    with pytest.raises(EngineNotAvailableError, match="DEEPSEEK_API_KEY"):
        BatchManager(Chain, ["x"], engines={"neurosymbolic": MODEL})
