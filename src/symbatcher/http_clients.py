"""One HTTP client per worker thread for symai's provider engines, while a run is active.

symai's provider engines share one module-level ``httpx.Client`` (100 connections kept
alive). Its pool (httpcore 1.0) re-scans every connection, and for each idle one all of
them again, whenever a request enters or leaves, under the GIL: with 50-200 workers
that was 1.5-2 ms of CPU per query, more than the rest of a query once its prompt
template is compiled once (``symbatcher.templates``). A worker makes one request at a
time, so a client of its own keeps one connection alive and the scan looks at one.

While a run binds an engine whose ``transport_client`` is unset (symai's default: the
shared client), that attribute holds a :class:`ThreadClients`: a worker thread of a run
gets its own client on its first request and closes it when it leaves the run; any other
thread goes on using symai's shared client. An engine given its own client keeps it.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx

from symbatcher.binding import current_route
from symbatcher.overrides import UNCHANGED, EngineOverride

#: set to 0, false, no or off to turn it off where a run is not built in code
ENV_NAME = "SYMBATCHER_CLIENT_PER_THREAD"

#: connections a worker's client keeps alive (it makes one request at a time; a second
#: host or a redirect may want another)
KEEPALIVE = 2

_local = threading.local()  # clients: this thread's clients by ThreadClients id


def _shared_client() -> httpx.Client:
    from symai.backend.transport import default_engine_api_client

    client: httpx.Client = default_engine_api_client()
    return client


class ThreadClients:
    """Stands in for an engine's ``transport_client``: what symai's transport calls
    (``request``, ``stream``) goes to the calling worker's own client."""

    def __init__(self) -> None:
        self.made = 0  # clients created, for tests and figures
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        """One context for all the clients: each would otherwise load the CA bundle
        itself (about 30 ms of CPU and 0.8 MB a client here)."""
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            return self._ssl

    def client(self) -> httpx.Client:
        """The calling thread's client: its own if it is a run's worker, else the shared one."""
        if current_route() is None:
            return _shared_client()
        clients: dict[int, httpx.Client] | None = getattr(_local, "clients", None)
        if clients is None:
            clients = _local.clients = {}
        client = clients.get(id(self))
        if client is None:
            client = httpx.Client(
                timeout=None,
                limits=httpx.Limits(max_keepalive_connections=KEEPALIVE),
                verify=self._ssl_context(),
            )
            clients[id(self)] = client
            self.made += 1
        return client

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self.client().request(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.client().stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else an engine may ask a client
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client(), name)


def close_thread_clients() -> None:
    """Close the calling thread's own clients (a worker does, as it leaves its run)."""
    clients: dict[int, httpx.Client] | None = getattr(_local, "clients", None)
    while clients:
        _, client = clients.popitem()
        client.close()


def _make(own: Any) -> Any:
    return ThreadClients() if own is None else UNCHANGED


#: shared by overlapping runs: the last one to end puts ``None`` (symai's default) back
client_per_thread = EngineOverride("transport_client", _make)
