"""ThreadClients: each worker thread talks HTTP through an ``httpx.Client`` of its own.

symai's HTTP engines share one client (``symai.backend.transport.ENGINE_API_CLIENT``,
used when an engine's ``transport_client`` is None). Its connection pool (httpcore 1.0)
scans all its connections, and for each idle one all of them again, every time a request
enters or leaves, under one lock: measured here at 200 workers, about 0.5 ms a scan and
two scans a query, some 5-10 % of a query's CPU. A worker makes one call at a time, so a
client of its own holds about one connection and scans next to nothing; the connections
in use are as many as before. The clients share one TLS context (building one per client
costs tens of milliseconds) and the shared client's timeout, and are closed when the
last run that uses them ends. An engine given its own ``transport_client`` is left alone.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from symbatcher.hooks.base import Hook, RunContext
from symbatcher.hooks.overrides import UNCHANGED, EngineOverride


class PerThreadClient:
    """Stands in for an ``httpx.Client``; each thread that uses it gets a client of its own."""

    def __init__(self, template: httpx.Client | None = None) -> None:
        self._timeout = template.timeout if template is not None else httpx.Timeout(None)
        self._tls = httpx.create_ssl_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self._closed = False

    def client(self) -> httpx.Client:
        """The calling thread's client, made on its first request."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=self._timeout,
                verify=self._tls,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=4),
            )
            with self._lock:
                if self._closed:
                    client.close()
                    raise RuntimeError("this PerThreadClient is closed")
                self._clients.append(client)
            self._local.client = client
        return client

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self.client().request(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.client().stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # get, post, ...: whatever symai calls
        return getattr(self.client(), name)

    @property
    def clients(self) -> int:
        """How many threads have a client (for tests and figures)."""
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


def _per_thread(own: Any) -> Any:
    if own is not None:
        return UNCHANGED  # the user gave this engine a client: theirs to manage
    from symai.backend.transport import default_engine_api_client

    return PerThreadClient(default_engine_api_client())


thread_clients = EngineOverride("transport_client", _per_thread, lambda client: client.close())


class ThreadClients(Hook):
    """For the run, symai's HTTP engines send each worker's requests through a client of
    that worker's own (see the module docstring); added by default for HTTP engines."""

    def __init__(self) -> None:
        super().__init__()
        self._engines: list[Any] = []

    def on_start(self, run: RunContext) -> None:
        self._engines = [e for e in run.engines.values() if hasattr(e, "client_max_retries")]
        for engine in self._engines:
            thread_clients.apply(engine)

    def on_end(self, run: RunContext) -> None:
        for engine in self._engines:
            thread_clients.restore(engine)
        self._engines = []
