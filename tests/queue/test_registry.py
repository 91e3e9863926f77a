"""Registered expressions: names only, clear errors."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from symbatcher.queue.registry import ExpressionRegistry, UnknownExpressionError


def test_register_and_look_up() -> None:
    names = ExpressionRegistry()

    @names.register("summarize")
    class Summarize:
        pass

    assert names.get("summarize") is Summarize
    assert "summarize" in names.names()
    with pytest.raises(UnknownExpressionError, match="registered: summarize"):
        names.get("os.system")
    with pytest.raises(ValueError, match="registered as 'summarize' already"):
        names.register("summarize")(object)
    with pytest.raises(ValueError, match="simple identifier"):
        names.register("a b")


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    yield
    for name in [name for name in sys.modules if name.startswith("plug_")]:
        del sys.modules[name]


def install_plugin(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution as pip leaves it: a dist-info with entry points, and its modules."""
    info = site / "plugexprs-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plugexprs\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[symbatcher.expressions]\n{entry_points}", encoding="utf-8"
    )
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source, encoding="utf-8")


def test_entry_points_of_an_installed_package_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        "shout = plug_shout:Shout\n",
        {"plug_shout": "class Shout:\n    def forward(self, input):\n        return input\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ExpressionRegistry()
    target = names.get("shout")
    assert target.__name__ == "Shout" and target.__module__ == "plug_shout"
    assert names.names() == ["shout"]


def test_a_broken_entry_point_is_named_and_does_not_hide_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin(
        tmp_path,
        "missing = plug_not_installed_anywhere:Thing\n"
        "crashes = plug_crash:Thing\n"
        "bad-name! = plug_ok:Ok\n"
        "ok = plug_ok:Ok\n"
        "mine = plug_ok:Ok\n",
        {
            "plug_crash": "raise RuntimeError('boom at import')\n",
            "plug_ok": "class Ok:\n    pass\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ExpressionRegistry()

    @names.register("mine")  # registered in code before the entry points load: it wins
    class Mine:
        pass

    with caplog.at_level(logging.WARNING, logger="symbatcher"):
        assert names.get("ok").__name__ == "Ok"
    assert names.get("mine") is Mine
    assert names.names() == ["mine", "ok"]
    with pytest.raises(UnknownExpressionError) as missing:
        names.get("missing")
    assert "'missing = plug_not_installed_anywhere:Thing' of plugexprs 1.0" in str(missing.value)
    assert "ModuleNotFoundError" in str(missing.value)
    with pytest.raises(UnknownExpressionError, match="RuntimeError: boom at import"):
        names.get("crashes")
    with pytest.raises(UnknownExpressionError, match="simple identifier"):
        names.get("bad-name!")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("missing", "crashes", "bad-name!", "mine"):
        assert f"entry point '{name} = " in logged


def test_every_concurrent_first_lookup_finds_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        "counted = plug_counted:Counted\n",
        {
            # an import that takes a while: the others look up while it runs
            "plug_counted": "WORK = sum(range(3_000_000))\nclass Counted:\n    pass\n"
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ExpressionRegistry()
    start = threading.Barrier(16)
    found: list[Any] = []

    def look() -> None:
        start.wait()
        found.append(names.get("counted"))

    threads = [threading.Thread(target=look) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16 and len({id(target) for target in found}) == 1
