"""The run-scoped lookup of symai's DynamicEngine block (symbatcher.engine_lookup).

What must hold: on any stack the fast walk answers what symai's own method answers (the
same object), including for values built to fool a quick test; it replaces only symai's
own walk and only while a run that wants it is active; a block's engine is routed into the
run (``test_dynamic_engines.py`` runs symai's own DynamicEngine); and the original is back
after the run, also after an exception.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from symai import Expression, Symbol
from symai.components import DynamicEngine
from symai.context import CURRENT_ENGINE_VAR
from symai.functional import EngineRepository

from symbatcher import BatchScheduler
from symbatcher import engine_lookup as lookup
from symbatcher.testing import SimulatedEngine, use_engine
from tests.cycles import left_in_cycles

ORIGINAL = EngineRepository.get_dynamic_engine_instance
FAST = lookup.fast_lookup(ORIGINAL)
REPO = EngineRepository()


def entered(engine: Any) -> DynamicEngine:
    """A DynamicEngine as the frame walk finds it inside its block (entering a real one
    would build a provider engine and set the context variable, which skips the walk)."""
    block = DynamicEngine(model="sim", api_key="none")
    block._entered = True
    block.engine_instance = engine
    return block


class Impostor:
    """Not a DynamicEngine, but its class renders as one: symai's test says it is one."""

    _entered = True

    def __init__(self) -> None:
        self.engine_instance = object()


Impostor.__module__ = "symai.components"
Impostor.__qualname__ = Impostor.__name__ = "DynamicEngine"


class Disguised:
    """Claims DynamicEngine as its ``__class__`` (as mocks and proxies do)."""

    _entered = True

    def __init__(self) -> None:
        self.engine_instance = object()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return DynamicEngine


class MyInt(int):
    """A subclass of a skipped type: tested, not skipped."""


def candidates(rng: random.Random) -> list[Callable[[], Any]]:
    plain: list[Callable[[], Any]] = [
        lambda: rng.randint(-5, 5),
        lambda: f"text {rng.random()}",
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: {"engine": entered(object())},  # inside a container: not a local
        lambda: [entered(object())],
        lambda: (1, 2),
        lambda: len,
        lambda: random,
        lambda: DynamicEngine,  # the class, not an instance
        lambda: Symbol("a symbol"),
        lambda: MyInt(3),
        lambda: DynamicEngine(model="sim", api_key="none"),  # not entered
    ]
    finds: list[Callable[[], Any]] = [
        lambda: entered(object()),
        Impostor,
        Disguised,
    ]
    return plain + (finds if rng.random() < 0.6 else [])


def answer_from(chunks: list[list[Any]], ask: Callable[[], Any]) -> Any:
    """Ask from ``len(chunks)`` frames down, each frame holding its chunk as locals."""
    _a, _b, _c = (*chunks[0], None, None, None)[:3]  # what the walk looks at
    if len(chunks) == 1:
        return ask()
    return answer_from(chunks[1:], ask)


def test_the_walk_answers_what_symai_answers_on_random_stacks() -> None:
    rng = random.Random(11)
    found = 0
    for _ in range(300):
        pool = candidates(rng)
        values = [rng.choice(pool)() for _ in range(rng.randint(0, 18))]
        chunks = [values[i : i + 3] for i in range(0, len(values), 3)] or [[]]
        theirs = answer_from(chunks, lambda: ORIGINAL(REPO))
        ours = answer_from(chunks, lambda: FAST(REPO))
        assert ours is theirs
        found += theirs is not None
    assert 50 < found < 250  # both kinds of stack were tried


def test_the_innermost_block_wins_as_in_symai() -> None:
    outer_engine, inner_engine = object(), object()
    outer = entered(outer_engine)  # noqa: F841 (a local of this frame is what is found)

    def inner() -> tuple[Any, Any]:
        block = entered(inner_engine)  # noqa: F841
        return ORIGINAL(REPO), FAST(REPO)

    assert inner() == (inner_engine, inner_engine)
    assert (ORIGINAL(REPO), FAST(REPO)) == (outer_engine, outer_engine)


def test_the_context_variable_comes_first() -> None:
    engine = object()

    def ask() -> tuple[Any, Any]:
        CURRENT_ENGINE_VAR.set(engine)
        return ORIGINAL(REPO), FAST(REPO)

    assert contextvars.copy_context().run(ask) == (engine, engine)


def test_the_walk_leaves_no_reference_cycle() -> None:
    """Before Python 3.13 a frame caches the locals read through its ``f_locals``: a walk
    that read its own frame's while holding that frame made a cycle, which held the whole
    stack above it (about 30 objects a query) for the cyclic GC, whose collections stall
    every worker of a run."""

    def run() -> None:
        for _ in range(100):
            assert answer_from([[1, "a", None]] * 5, lambda: FAST(REPO)) is None

    assert left_in_cycles(run) < 10


def test_the_fast_walk_replaces_only_symais_own_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lookup._source_hash(ORIGINAL) in lookup.KNOWN_SOURCES, (
        "the installed symai's get_dynamic_engine_instance is not the one the fast walk "
        "mirrors: compare it with engine_lookup.fast_lookup and add its hash if they agree"
    )
    asked: list[Any] = []

    def someone_elses(self: Any) -> None:
        asked.append(self)

    monkeypatch.setattr(lookup._Fast, "runs", 1)  # as while a run that wants it is active
    assert lookup._make(someone_elses)(REPO) is None
    assert asked == [REPO]  # their method answered, not a walk of ours
    assert lookup._source_hash(len) is None  # no Python source at all: never "symai's"


# ---------------------------------------------------------------- full runs
class Looks(Expression):  # type: ignore[misc]
    """Records the lookup method its query meets, then queries."""

    seen: ClassVar[list[Any]] = []
    fast: ClassVar[list[int]] = []  # how many runs wanted the fast walk, at each query

    def forward(self, input: Any, **kwargs: Any) -> Any:
        Looks.seen.append(EngineRepository.get_dynamic_engine_instance)
        Looks.fast.append(lookup._Fast.runs)
        if input == "boom":
            raise ValueError("boom")
        return Symbol(input).query("Echo")


class InBlock(Expression):  # type: ignore[misc]
    """Queries inside a (walk-found) DynamicEngine block: symai sends it to the block's
    engine, past the scheduler's binding, with or without the fast walk."""

    def forward(self, input: Any, other: Any = None, **kwargs: Any) -> Any:
        block = entered(other)  # noqa: F841 (found by symai's frame walk)
        return Symbol(input).query("Echo")


@pytest.fixture
def engine() -> Any:
    with use_engine(SimulatedEngine()) as simulated:
        yield simulated


def test_a_run_uses_the_fast_walk_and_puts_symais_back(engine: Any) -> None:
    Looks.seen, Looks.fast = [], []
    BatchScheduler()(expr=Looks, dataset=["a", "b", "c"], num_workers=2)
    assert all(getattr(m, "__wrapped__", None) is ORIGINAL for m in Looks.seen)
    assert len(Looks.seen) == 3 and Looks.fast == [1, 1, 1]
    assert EngineRepository.get_dynamic_engine_instance is ORIGINAL
    assert lookup._Fast.runs == 0


def test_symais_method_is_back_after_a_failed_run(engine: Any) -> None:
    Looks.seen = []
    with pytest.raises(ValueError, match="boom"):
        BatchScheduler(error_handling="fail_fast")(
            expr=Looks, dataset=["a", "boom", "c"], num_workers=1
        )
    assert any(getattr(m, "__wrapped__", None) is ORIGINAL for m in Looks.seen)
    assert EngineRepository.get_dynamic_engine_instance is ORIGINAL


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_it_can_be_turned_off(engine: Any, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Looks.seen = []
    if how == "argument":
        scheduler = BatchScheduler(fast_lookup=False)
    else:
        monkeypatch.setenv(lookup.ENV_NAME, "0")
        scheduler = BatchScheduler()
    Looks.fast = []
    scheduler(expr=Looks, dataset=["a", "b"], num_workers=2)
    # still routed (a DynamicEngine block's calls are the item's), with symai's own walk
    assert all(getattr(m, "__wrapped__", None) is ORIGINAL for m in Looks.seen)
    assert Looks.fast == [0, 0]
    assert EngineRepository.get_dynamic_engine_instance is ORIGINAL


def test_a_replacement_made_before_the_run_is_routed_and_put_back(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def theirs(self: Any) -> Any:
        return ORIGINAL(self)

    monkeypatch.setattr(EngineRepository, "get_dynamic_engine_instance", theirs)
    Looks.seen = []
    BatchScheduler()(expr=Looks, dataset=["a", "b"], num_workers=2)
    assert [getattr(m, "__wrapped__", None) for m in Looks.seen] == [theirs, theirs]
    assert EngineRepository.get_dynamic_engine_instance is theirs


@pytest.mark.parametrize("fast", [True, False])
def test_a_block_found_by_the_walk_routes_as_in_symai(engine: Any, fast: bool) -> None:
    other = SimulatedEngine()
    items = [f"item {i}" for i in range(20)]
    results = BatchScheduler(fast_lookup=fast)(
        expr=InBlock, dataset=items, num_workers=4, other=other
    )
    assert results.stats.failed == 0
    assert other.call_count == 20 and engine.call_count == 0
    assert results.stats.engine_calls == 20  # the run's calls, though not its bound engine's
    assert all(item in str(result) for item, result in zip(items, results, strict=True))


class Nests(Expression):  # type: ignore[misc]
    """Runs a scheduler of its own (no fast walk) inside the outer run's item."""

    def forward(self, input: Any, **kwargs: Any) -> Any:
        Looks.seen, Looks.fast = [], []
        BatchScheduler(fast_lookup=False)(expr=Looks, dataset=["in"], num_workers=1)
        return Looks.fast[0]


@pytest.mark.parametrize("outer_fast", [True, False])
def test_overlapping_runs_share_the_routing_and_count_the_fast_walk(
    engine: Any, outer_fast: bool
) -> None:
    results = BatchScheduler(fast_lookup=outer_fast)(expr=Nests, dataset=["a"], num_workers=1)
    assert list(results) == [int(outer_fast)]  # the inner run's queries saw the outer's count
    assert all(getattr(m, "__wrapped__", None) is ORIGINAL for m in Looks.seen)
    assert EngineRepository.get_dynamic_engine_instance is ORIGINAL
    assert lookup._Fast.runs == 0
