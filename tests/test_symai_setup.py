"""Importing symbatcher on a bare machine: silent, no prompt; a broken config is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CODE = "import symbatcher, symai; print('imported', symbatcher.__version__)"


def python_in(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_on_a_bare_machine_is_silent(tmp_path: Path) -> None:
    done = python_in(tmp_path, CODE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported ")
    assert done.stderr == ""


def test_broken_config_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "symai.config.json").write_text(json.dumps({}))
    code = (
        "try:\n    import symbatcher\n"
        "except Exception as e:\n    print('ERR', type(e).__name__, e)\n"
    )
    done = python_in(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "ERR SymaiConfigError symai could not start" in done.stdout
    assert str(tmp_path / "symai.config.json") in done.stdout
    assert "NEUROSYMBOLIC_ENGINE_MODEL" in done.stdout


def test_missing_engine_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "symai.config.json").write_text(
        json.dumps({"NEUROSYMBOLIC_ENGINE_MODEL": "", "NEUROSYMBOLIC_ENGINE_API_KEY": ""})
    )
    code = (
        "from symbatcher import BatchScheduler, EngineNotAvailableError\n"
        "from symai import Expression\n"
        "try:\n    BatchScheduler()(expr=Expression, dataset=['x'], num_workers=1)\n"
        "except EngineNotAvailableError as e:\n    print('ERR', e)\n"
    )
    done = python_in(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "ERR no engine named 'neurosymbolic'" in done.stdout
    assert "NEUROSYMBOLIC_ENGINE_MODEL" in done.stdout
