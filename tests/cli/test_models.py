"""``symbatcher models``: the models ``--model`` takes, and what a trial's data would cost on
each. The trial runs symai's DeepSeek engine over HTTP to the local server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from symai.backend.engines.neurosymbolic.deepseek.models import deepseek_model_spec_for

from symbatcher.cli import main
from symbatcher.dollars import usd
from symbatcher.providers import known_models
from symbatcher.testing.hosted import hosted_engines_at
from symbatcher.testing.server import LocalServer
from tests.cli.support import write_jsonl

FLASH, PRO = "deepseek:deepseek-v4-flash", "deepseek:deepseek-v4-pro"


def test_the_models_symai_knows_with_their_prices_and_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-t")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["model"] for row in rows] == known_models()
    by_name = {row["model"]: row for row in rows}
    price = deepseek_model_spec_for(PRO).pricing  # symai's own table
    assert (by_name[PRO]["input_per_1m"], by_name[PRO]["output_per_1m"]) == (
        price.input,
        price.output,
    )
    assert by_name[PRO]["key_variable"] == "DEEPSEEK_API_KEY" and by_name[PRO]["key_set"]
    assert not by_name["openai:gpt-5.4-mini"]["key_set"]
    assert main(["models", "deepseek"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "input/1M", "output/1M", "key"]
    assert [line.split()[0] for line in lines[1:]] == [FLASH, PRO]
    assert lines[2].split()[1:] == [
        f"${price.input:g}",
        f"${price.output:g}",
        "DEEPSEEK_API_KEY",
        "(set)",
    ]


def test_what_a_trials_whole_data_would_cost_on_each_model(
    pipelines: str,
    local_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-t")
    data = write_jsonl(tmp_path / "in.jsonl", [f"review {i} " * (i % 3 + 1) for i in range(50)])
    run = ["run", f"{pipelines}:Echo", str(data), "--run-dir", "trial", "--model", FLASH]
    with hosted_engines_at(local_server.url):
        assert main([*run, "--limit", "10", "--progress", "off"]) == 0
    stats = local_server.stats()
    capsys.readouterr()
    assert main(["models", "deepseek", "--run-dir", "trial", "--json"]) == 0
    rows = {row["model"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    for model in (FLASH, PRO):
        price = deepseek_model_spec_for(model).pricing
        per_item = (
            stats["prompt_tokens"] * price.input + stats["completion_tokens"] * price.output
        ) / 10  # the trial's 10 items, each one call
        assert rows[model]["whole_data"] == pytest.approx(float(per_item) * 50 / 1e6)
    assert main(["models", "deepseek", "--run-dir", "trial"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-2:] == ["50", "records"]
    assert [line.split()[0] for line in lines[1:3]] == [FLASH, PRO]  # cheapest first
    assert lines[1].split()[-1] == usd(rows[FLASH]["whole_data"])
    assert lines[-1].startswith("at the run's ") and f"(10 items on {FLASH})" in lines[-1]


def test_what_it_cannot_tell_is_named(
    pipelines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "no-such-provider"]) == 2
    assert "symai knows no model whose name holds 'no-such-provider'" in capsys.readouterr().err
    assert main(["models", "--run-dir", str(tmp_path / "nothing")]) == 2
    assert "no run state in" in capsys.readouterr().err
