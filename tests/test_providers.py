"""A hosted model named on the command line (``--model``): symai's own engine for it, the key
from the environment. The engine is symai's ``DeepseekEngine``; its requests go over HTTP to
the local server on 127.0.0.1 (``hosted_engines_at``), never to DeepSeek."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from symai.backend.engines.neurosymbolic.deepseek.models import deepseek_model_spec_for

from symbatcher.cli import main
from symbatcher.errors import EngineNotAvailableError
from symbatcher.providers import hosted_engine, key_variable, model_problem
from symbatcher.testing.hosted import hosted_engines_at
from symbatcher.testing.server import LocalServer

MODEL = "deepseek:deepseek-v4-flash"
KEY = "sk-test-not-a-real-key-4711"

PIPELINE = """
from symai import Expression, Symbol


class Label(Expression):
    def forward(self, input, **kwargs):
        return str(Symbol(input).query("Label this review"))
"""


@pytest.fixture
def deepseek(local_server: LocalServer) -> Iterator[LocalServer]:
    with hosted_engines_at(local_server.url):
        yield local_server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "labels.py").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("\n".join(f'"review {i}"' for i in range(12)) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_model_is_named_with_its_provider() -> None:
    assert model_problem(MODEL) is None
    bare = model_problem("deepseek-v4-flash")
    assert bare is not None and f"did you mean {MODEL!r}" in bare
    assert "deepseek:..." in bare and "openai:..." in bare  # the providers symai knows
    assert "did you mean" not in (model_problem("no-such-model-at-all") or "")
    assert key_variable(MODEL) == "DEEPSEEK_API_KEY"
    assert key_variable("openai:gpt-5.4-mini") == "OPENAI_API_KEY"


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(EngineNotAvailableError, match="DEEPSEEK_API_KEY is not set"):
        hosted_engine(MODEL)
    monkeypatch.setenv("MY_KEY", KEY)
    engine = hosted_engine(MODEL, key_env="MY_KEY", timeout=7.0)
    assert type(engine).__name__ == "DeepseekEngine" and engine.model == MODEL
    assert engine.config["NEUROSYMBOLIC_ENGINE_API_KEY"] == KEY


def test_run_with_a_model_needs_no_symai_config_and_keeps_no_key(
    deepseek: LocalServer,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    args = ["run", "labels:Label", "in.jsonl", "--run-dir", "run", "--model", MODEL]
    assert main([*args, "--out", "out.jsonl", "--max-cost", "1"]) == 0
    rows = [json.loads(line) for line in (project / "out.jsonl").open()]
    assert [row["index"] for row in rows] == list(range(12))
    assert all(f"review {row['index']}" in row["output"] for row in rows)
    stats = deepseek.stats()
    assert stats["ok"] == 12
    price = deepseek_model_spec_for(MODEL).pricing  # symai's own table prices the calls
    cost = (stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output) / 1e6
    assert sum(row["cost"] for row in rows) == pytest.approx(cost) and cost > 0
    command = json.loads((project / "run" / "command.json").read_text())
    assert command["engine"]["model"] == MODEL
    for path in (project / "run").rglob("*"):  # the key is nowhere in the run's directory
        assert not path.is_file() or KEY.encode() not in path.read_bytes()
    capsys.readouterr()
    # a retry builds the same engine, with the key read again
    assert main(["retry", "run"]) == 0
    assert deepseek.stats()["ok"] == 12  # nothing failed, so nothing ran again


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "deepseek-v4-flash"], f"did you mean {MODEL!r}"),
        (["--model", MODEL, "--engine-url", "http://127.0.0.1:9"], "give one"),
        (["--api-key-env", "MY_KEY"], "the engine options: api_key_env (--api-key-env) is for"),
        (["--model", MODEL, "--api-key-env", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE is not set"),
    ],
)
def test_a_model_that_cannot_be_used_is_named_before_anything_runs(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert main(["run", "labels:Label", "in.jsonl", "--run-dir", "run", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (project / "run").exists()


def test_the_demo_runs_on_a_named_model(
    deepseek: LocalServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    assert main(["demo", "--model", MODEL, "--items", "6", "--progress", "off"]) == 0
    assert f"engine: symai's engine for {MODEL}" in capsys.readouterr().err
    assert deepseek.stats()["ok"] == 12  # two calls per review


def test_a_service_with_a_model_it_cannot_use_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    assert main(["serve", "--dir", "svc", "--model", MODEL]) == 2
    assert "DEEPSEEK_API_KEY is not set" in capsys.readouterr().err
    assert main(["serve", "--dir", "svc", "--model", "deepseek-v4-flash"]) == 2
    assert f"did you mean {MODEL!r}" in capsys.readouterr().err
    assert not (tmp_path / "svc").exists()
