"""The command tests' module of expressions, in the working directory as a user has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import PIPELINES, module_numbers


@pytest.fixture
def pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of expressions in the working directory, as a user would have it."""
    name = f"pipelines_{next(module_numbers)}"
    (tmp_path / f"{name}.py").write_text(PIPELINES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name
