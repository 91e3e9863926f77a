"""``symbatcher serve``: what stops a service before it starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from symbatcher.cli import main
from symbatcher.testing import SimulatedEngine


def test_a_service_with_no_engine_or_a_bad_import_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No engine of its own and no provider's key (so no job could name a model)."""
    from symbatcher import EngineNotAvailableError
    from symbatcher.binding import available_engine
    from symbatcher.providers import catalog

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EngineNotAvailableError):  # this test's premise: symai has none
        available_engine("neurosymbolic")
    for entry in catalog():
        monkeypatch.delenv(entry.key_variable, raising=False)
    assert main(["serve", "--dir", "svc"]) == 2
    err = capsys.readouterr().err
    assert "no engine named 'neurosymbolic'" in err
    assert "Or set a provider's API key variable" in err
    assert main(["serve", "--dir", "svc", "--import", "no_such_module_x"]) == 2
    assert "cannot import 'no_such_module_x' (--import)" in capsys.readouterr().err
    assert not (tmp_path / "svc").exists()


def test_a_service_whose_port_is_taken_starts_nothing(
    engine: SimulatedEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second service on a queue folder, its port taken by the first: before, its
    workers ran the folder's jobs anyway, and it stopped only after they ended."""
    from symbatcher.queue import JobQueue

    monkeypatch.chdir(tmp_path)
    queue = JobQueue(tmp_path / "svc" / "jobs.sqlite")
    job = queue.submit("echo", items=["a"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--dir", "svc", "--port", port]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
        assert main(["serve", "--dir", "new", "--port", port]) == 2
    assert queue.get(job.id).state == "queued" and queue.get(job.id).claims == 0
    assert not (tmp_path / "svc" / "runs").exists() and engine.call_count == 0
    assert not (tmp_path / "new").exists()
    queue.close()
