"""EngineOverride: a setting shared by overlapping runs, put back by the last one."""

from __future__ import annotations

from typing import Any

from symbatcher.overrides import UNCHANGED, EngineOverride


class Engine:
    def __init__(self, retries: Any) -> None:
        self.retries = retries


def test_the_last_run_puts_the_engines_own_value_back_and_releases_once() -> None:
    released: list[Any] = []
    override = EngineOverride("retries", lambda own: f"set over {own}", released.append)
    engine = Engine(2)
    override.apply(engine)
    override.apply(engine)  # a second run on the same engine shares the setting
    assert engine.retries == "set over 2"
    override.restore(engine)
    assert engine.retries == "set over 2" and released == []  # the other run still needs it
    override.restore(engine)
    assert engine.retries == 2 and released == ["set over 2"]
    override.restore(engine)  # once more: nothing held, nothing changes
    assert engine.retries == 2 and released == ["set over 2"]


def test_engines_without_the_attribute_or_declined_are_left_alone() -> None:
    override = EngineOverride("retries", lambda own: UNCHANGED if own is not None else 0)
    mine = Engine("mine")
    override.apply(mine)
    override.apply(object())
    assert mine.retries == "mine"
    override.restore(mine)
    assert mine.retries == "mine"


class FromClass:
    def method(self) -> str:
        return "the class's"


def test_a_value_the_class_provided_is_provided_by_the_class_again() -> None:
    override = EngineOverride("method", lambda own: lambda: f"over {own()}")
    obj = FromClass()
    override.apply(obj)
    assert obj.method() == "over the class's" and "method" in vars(obj)
    override.restore(obj)
    assert "method" not in vars(obj) and obj.method() == "the class's"


def test_a_value_replaced_during_a_run_is_left_alone(caplog: Any) -> None:
    released: list[Any] = []
    override = EngineOverride("retries", lambda own: "ours", released.append)
    engine = Engine(2)
    override.apply(engine)
    engine.retries = "theirs"
    with caplog.at_level("WARNING", logger="symbatcher"):
        override.restore(engine)
    assert engine.retries == "theirs"
    assert "replaced during a run" in caplog.text
    assert released == ["ours"]  # what we set is still ours to release


def test_held_restores_only_what_it_holds() -> None:
    """A block whose apply was declined must not release a hold another run took later."""
    override = EngineOverride("retries", lambda own: UNCHANGED if own == "theirs" else "ours")
    engine = Engine("theirs")
    with override.held(engine, object()):  # declined, and no attribute at all
        engine.retries = 2  # their value goes; a later run sets ours
        with override.held(engine):
            assert engine.retries == "ours"
            assert override.apply(engine) is True  # a third holder, restored below
        assert engine.retries == "ours"  # the outer block held nothing: left as it is
    assert engine.retries == "ours"
    override.restore(engine)
    assert engine.retries == 2


def test_held_restores_after_an_exception() -> None:
    override = EngineOverride("retries", lambda own: "ours")
    engines = [Engine(1), Engine(2)]
    try:
        with override.held(*engines):
            assert [e.retries for e in engines] == ["ours", "ours"]
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert [e.retries for e in engines] == [1, 2]


class Repository:
    @staticmethod
    def get(name: str) -> str:
        return f"registry {name}"

    def query(self, name: str) -> str:
        return self.get(name)  # as symai's EngineRepository.query does


def test_a_static_method_stays_one_and_its_descriptor_comes_back() -> None:
    own = Repository.__dict__["get"]
    override = EngineOverride("get", lambda get: lambda name: f"routed {get(name)}")
    with override.held(Repository), override.held(Repository):  # two runs at once
        assert Repository().query("x") == "routed registry x"  # no self passed as name
        assert Repository.get("y") == "routed registry y"
    assert Repository.__dict__["get"] is own and Repository().query("x") == "registry x"


def test_a_static_method_someone_replaced_meanwhile_is_left_to_them() -> None:
    own = Repository.__dict__["get"]
    theirs = staticmethod(lambda name: f"theirs {name}")
    override = EngineOverride("get", lambda get: lambda name: "routed")
    try:
        with override.held(Repository):
            Repository.get = theirs  # type: ignore[assignment,method-assign]
        assert Repository.__dict__["get"] is theirs
    finally:
        Repository.get = own  # type: ignore[method-assign]
