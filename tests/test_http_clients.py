"""A client per worker thread for symai's HTTP engines during a run (symbatcher.http_clients).

Through symai's real vLLM engine and the local server: each worker sends on a client of its
own and closes it when it leaves; threads outside the run keep symai's shared client; an
engine given its own client keeps it; and the engine is as before after the run, also when
the run fails.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx
import pytest
from symai import Expression, Symbol
from symai.backend import transport
from symai.backend.transport import default_engine_api_client

from symbatcher import BatchScheduler
from symbatcher.http_clients import ThreadClients
from symbatcher.testing.server import LocalServer


class Recording(Expression):  # type: ignore[misc]
    """Asks once and notes, per worker thread, the engine's client stand-in and the client
    it hands this thread."""

    engine: Any = None
    seen: dict[int, tuple[Any, Any]]
    lock = threading.Lock()

    def forward(self, input: Any, **kwargs: Any) -> Any:
        answer = Symbol(input).query("Answer")
        stand_in = self.engine.transport_client
        client = stand_in.client() if isinstance(stand_in, ThreadClients) else None
        with self.lock:
            self.seen[threading.get_ident()] = (stand_in, client)
        if str(input) == "fail":
            raise ValueError("this item fails")
        return answer


@pytest.fixture
def recording(local_vllm: Any) -> type[Recording]:
    Recording.engine = local_vllm
    Recording.seen = {}
    return Recording


def test_each_worker_sends_on_a_client_of_its_own(
    local_server: LocalServer, local_vllm: Any, recording: type[Recording], mocker: Any
) -> None:
    local_server.configure(latency=(0.0, 0.01))
    ca_loads = mocker.spy(ssl, "create_default_context")  # httpx loads the CA bundle in it
    # (a client of its own each: ~30 ms and 0.8 MB)
    items = [f"item-{i}" for i in range(96)]
    results = BatchScheduler()(expr=recording, dataset=items, num_workers=16)
    assert results.stats.failed == 0
    assert all(f"item-{i}" in str(results[i]) for i in range(96))
    stand_ins = {id(s) for s, _ in recording.seen.values()}
    clients = [c for _, c in recording.seen.values()]
    assert len(stand_ins) == 1 and isinstance(next(iter(recording.seen.values()))[0], ThreadClients)
    assert len({id(c) for c in clients}) == len(clients) > 1  # one per thread
    assert all(c is not default_engine_api_client() for c in clients)
    assert ca_loads.call_count == 0  # the shared client's SSL context serves them all
    assert all(c.is_closed for c in clients)  # closed as their workers left
    assert local_server.stats()["connections"] <= 16  # one kept alive per worker
    assert local_vllm.transport_client is None  # symai's default again


def test_the_engine_is_as_before_after_a_failed_run(
    local_vllm: Any, recording: type[Recording]
) -> None:
    scheduler = BatchScheduler(error_handling="fail_fast")
    with pytest.raises(ValueError, match="this item fails"):
        scheduler(expr=recording, dataset=["a", "fail", "b"], num_workers=2)
    assert local_vllm.transport_client is None
    assert all(c.is_closed for _, c in recording.seen.values())


def test_threads_outside_the_run_keep_symai_shared_client(
    local_vllm: Any, recording: type[Recording]
) -> None:
    stream = BatchScheduler().imap(expr=recording, dataset=["a", "b", "c"], num_workers=2)
    next(stream)
    stand_in = local_vllm.transport_client
    assert isinstance(stand_in, ThreadClients)
    assert stand_in.client() is default_engine_api_client()  # the main thread: no route
    assert "echo" in str(Symbol("from the main thread").query("Answer"))
    for _ in stream:
        pass
    assert local_vllm.transport_client is None


def test_an_engine_with_its_own_client_keeps_it(
    local_vllm: Any, recording: type[Recording]
) -> None:
    sent: list[str] = []
    own = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.url.path)]})
    local_vllm.transport_client = own
    try:
        results = BatchScheduler()(expr=recording, dataset=["a", "b", "c", "d"], num_workers=2)
        assert results.stats.failed == 0
        assert {id(s) for s, _ in recording.seen.values()} == {id(own)}
        assert sent.count("/v1/chat/completions") == 4
        assert local_vllm.transport_client is own and not own.is_closed
    finally:
        local_vllm.transport_client = None
        own.close()


def test_it_can_be_turned_off(local_vllm: Any, recording: type[Recording]) -> None:
    BatchScheduler(client_per_thread=False)(expr=recording, dataset=["a", "b"], num_workers=2)
    assert {s for s, _ in recording.seen.values()} == {None}


def test_worker_clients_copy_a_configured_shared_client(
    monkeypatch: pytest.MonkeyPatch, local_vllm: Any, recording: type[Recording]
) -> None:
    sent: list[str] = []
    shared = httpx.Client(
        timeout=20.0,
        headers={"x-team": "research"},
        event_hooks={"request": [lambda request: sent.append(request.headers["x-team"])]},
    )
    monkeypatch.setattr(transport, "default_engine_api_client", lambda: shared)
    try:
        results = BatchScheduler()(expr=recording, dataset=["a", "b", "c", "d"], num_workers=2)
        assert results.stats.failed == 0
        clients = [c for _, c in recording.seen.values()]
        assert clients and all(c is not shared for c in clients)
        assert all(
            c.timeout == shared.timeout and c.headers["x-team"] == "research" for c in clients
        )
        assert sent == ["research"] * 4  # its request hook ran for every request
    finally:
        shared.close()


def test_a_shared_client_with_proxies_serves_every_thread(
    monkeypatch: pytest.MonkeyPatch, local_vllm: Any, recording: type[Recording]
) -> None:
    sent: list[str] = []
    shared = httpx.Client(
        mounts={"https://": httpx.HTTPTransport()},  # a transport of its own for https
        event_hooks={"request": [lambda request: sent.append(request.url.path)]},
    )
    monkeypatch.setattr(transport, "default_engine_api_client", lambda: shared)
    try:
        results = BatchScheduler()(expr=recording, dataset=["a", "b", "c"], num_workers=2)
        assert results.stats.failed == 0
        assert {id(c) for _, c in recording.seen.values()} == {id(shared)}
        assert sent.count("/v1/chat/completions") == 3
    finally:
        shared.close()


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_proxies_from_the_environment_leave_each_worker_a_client_of_its_own(
    no_proxies: pytest.MonkeyPatch,
    local_server: LocalServer,
    local_vllm: Any,
    recording: type[Recording],
) -> None:
    """symai's client takes the proxies the environment names when it is built; a worker's
    client, built from the same environment, takes the same ones. Before, a proxy cost the
    clients of their own: every thread used the shared one."""
    no_proxies.setenv("HTTP_PROXY", local_server.url)  # it answers for any host, as a proxy
    no_proxies.setenv("NO_PROXY", "intranet.example")
    shared = httpx.Client(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
    no_proxies.setattr(transport, "default_engine_api_client", lambda: shared)
    try:
        items = [f"item-{i}" for i in range(8)]
        results = BatchScheduler()(expr=recording, dataset=items, num_workers=4)
        assert results.stats.failed == 0
        clients = [c for _, c in recording.seen.values()]
        assert clients and all(c is not shared for c in clients)
        stats = local_server.stats()
        assert stats["ok"] == 8 and stats["proxied"] == 8  # each through the proxy
    finally:
        shared.close()


def test_proxies_given_in_code_or_changed_since_keep_the_shared_client(
    no_proxies: pytest.MonkeyPatch,
) -> None:
    """Only proxies a worker's client would find in the environment as they are are
    copied: one given in code, or an environment changed since, keeps the shared client."""
    from symbatcher.http_clients import _copyable_settings

    no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxies.setenv("NO_PROXY", "intranet.example")
    with (
        httpx.Client() as from_environment,
        httpx.Client(proxy="http://127.0.0.1:7") as in_code,
        httpx.Client(trust_env=False, mounts={"http://": httpx.HTTPTransport()}) as mounted,
    ):
        assert _copyable_settings(from_environment) is not None
        assert _copyable_settings(in_code) is None
        assert _copyable_settings(mounted) is None
        no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:8")
        assert _copyable_settings(from_environment) is None
        no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        no_proxies.setenv("NO_PROXY", "other.example")
        assert _copyable_settings(from_environment) is None


def test_a_request_without_a_timeout_gets_one_so_a_stalled_server_cannot_hold_its_item(
    monkeypatch: pytest.MonkeyPatch,
    local_server: LocalServer,
    local_vllm: Any,
    recording: type[Recording],
) -> None:
    """An engine symai configured itself sends with no timeout (``client_timeout`` None)
    on symai's client, which has none either: a provider that stops answering held the
    call for ever. A worker's client has the default; a timed-out call fails (retried by
    call retries, none here) instead of hanging its item."""
    from symbatcher import CallRetry, http_clients

    monkeypatch.setattr(local_vllm, "client_timeout", None)
    monkeypatch.setattr(http_clients, "DEFAULT_TIMEOUT", httpx.Timeout(0.3))
    local_server.configure(slow_rate=1.0, slow_latency=2.0)
    results = BatchScheduler(hooks=[CallRetry(1)])(
        expr=recording, dataset=["a", "b"], num_workers=2
    )
    assert results.stats.failed == 2
    assert {r.type for r in results} == {"EngineTransportError"}  # type: ignore[union-attr]
    assert "timed out" in str(results[0]).lower()
    assert local_server.stats()["slow"] == 2  # one request each, none waited out
