"""package.json: the manifest symbolicai 1.x's ``Import`` reads to load the package.

1.x keeps packages under ``~/.symai/packages/<user>/<repo>`` (that directory on
``sys.path``) and imports each expression as ``<user>.<repo>.<module with dots>``, taking
``type`` from it. The test lays the checkout out the same way and loads it so.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from symai import Expression

import symbatcher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def packages_dir(tmp_path: Path) -> Iterator[Path]:
    """A 1.x packages directory holding this checkout as ``someone/symbatcher``."""
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "symbatcher").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            if name.startswith("someone"):
                del sys.modules[name]


def test_the_manifest_has_the_fields_import_reads() -> None:
    manifest = json.loads((ROOT / "package.json").read_text())
    assert manifest["version"] == symbatcher.__version__
    # what pip installs says the same (it said 0.7.5 while the package said 0.7.6)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == symbatcher.__version__
    assert manifest["name"] and manifest["description"]
    assert manifest["dependencies"] == []
    entries = [*manifest["expressions"], manifest["run"]]
    assert all(set(entry) == {"module", "type"} for entry in entries)
    assert {"module": "src/symbatcher/scheduler", "type": "BatchScheduler"} in entries


def test_import_1x_style_loads_the_scheduler(packages_dir: Path) -> None:
    manifest = json.loads((packages_dir / "someone" / "symbatcher" / "package.json").read_text())
    for entry in [*manifest["expressions"], manifest["run"]]:
        module = importlib.import_module("someone.symbatcher." + entry["module"].replace("/", "."))
        loaded = getattr(module, entry["type"])
        assert isinstance(loaded, type) and issubclass(loaded, Expression)
        assert loaded.__name__ == "BatchScheduler"
        assert callable(loaded().forward)
