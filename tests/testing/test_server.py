"""The local OpenAI-compatible server: what symai's engines ask, and the behaviours it fakes."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from symbatcher.testing.server import LocalServer


def chat(client: httpx.Client, url: str, text: str, **extra: object) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    return client.post(f"{url}/v1/chat/completions", json=body)


def test_answers_contain_the_input_and_report_usage(local_server: LocalServer) -> None:
    with httpx.Client() as client:
        reply = chat(client, local_server.url, "hello there").json()
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert "hello there" in message["content"]
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    stats = local_server.stats()
    assert stats["ok"] == 1 and stats["prompt_tokens"] == usage["prompt_tokens"]


def test_discovery_routes_that_symai_engines_call(local_server: LocalServer) -> None:
    with httpx.Client(base_url=local_server.url) as client:
        models = client.get("/v1/models").json()
        assert models["data"][0]["id"] and models["data"][0]["max_model_len"] == 8192
        assert client.get("/props").json()["default_generation_settings"]["n_ctx"] == 8192
        tokens = client.post("/tokenize", json={"model": "m", "prompt": "a" * 40}).json()
        assert tokens["count"] == 10 == len(tokens["tokens"])
        assert client.post("/apply-template", json={"messages": [{"content": "x"}]}).json()
        assert client.get("/nowhere").status_code == 404
        bad = client.post("/v1/chat/completions", content=b"not json")
        assert bad.status_code == 400


def test_rpm_limit_answers_429_with_retry_after(local_server: LocalServer) -> None:
    local_server.configure(rpm=60, burst_seconds=2.0)  # 1/s, two at once
    with httpx.Client() as client:
        codes = [chat(client, local_server.url, f"q{i}") for i in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    limited = [r for r in codes[2:] if r.status_code == 429]
    assert limited, "a third request within the same second must be refused"
    retry = float(limited[0].headers["retry-after"])
    assert 0 < retry <= 1.0
    assert local_server.stats()["rate_limited"] == len(limited)


def test_tpm_limit_counts_tokens(local_server: LocalServer) -> None:
    local_server.configure(tpm=600, burst_seconds=1.0)  # 10 tokens a second
    with httpx.Client() as client:
        first = chat(client, local_server.url, "x" * 8)
        big = chat(client, local_server.url, "x" * 400)
    assert first.status_code == 200
    assert big.status_code == 429 and big.json()["error"]["type"] == "tokens"


def test_errors_drops_and_slow_answers(local_server: LocalServer) -> None:
    local_server.configure(error_rate=1.0)
    with httpx.Client() as client:
        assert chat(client, local_server.url, "x").status_code == 500
        local_server.configure(error_rate=0.0, drop_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            chat(client, local_server.url, "x")
        local_server.configure(drop_rate=0.0, slow_rate=1.0, slow_latency=5.0)
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                f"{local_server.url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "x"}]},
                timeout=0.2,
            )
    stats = local_server.stats()
    assert stats["slow"] == 1


def test_concurrency_cap_queues_requests(local_server: LocalServer) -> None:
    local_server.configure(max_concurrency=3, latency=0.05)
    with httpx.Client() as client, ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda i: chat(client, local_server.url, f"c{i}"), range(24)))
    assert all(r.status_code == 200 for r in replies)
    stats = local_server.stats()
    assert stats["max_in_flight"] == 3, stats


def test_latency_is_applied(local_server: LocalServer) -> None:
    local_server.configure(latency=0.2)
    with httpx.Client() as client:
        started = time.perf_counter()
        chat(client, local_server.url, "x")
        assert time.perf_counter() - started >= 0.2


def test_configure_rejects_unknown_settings(local_server: LocalServer) -> None:
    with pytest.raises(ValueError, match="wobble"):
        local_server.configure(wobble=1)
    with pytest.raises(TypeError, match="wobble"):
        LocalServer(wobble=1)


def test_runs_in_a_child_process_from_the_command_line() -> None:
    with LocalServer(process=True, latency=0.0) as server:
        assert server._child is not None
        with httpx.Client() as client:
            assert (
                "ping"
                in chat(client, server.url, "ping").json()["choices"][0]["message"]["content"]
            )
        child = server._child
    assert child.poll() is not None  # stopped with the block


def test_command_line_help_names_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "symbatcher.testing.server", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--rpm" in done.stdout and "--latency" in done.stdout
