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

symai's shared client has no timeout, and its engines set one per request only when built
with ``client_timeout``: a provider that stops answering on an open connection would hold
the call, and its item, for ever. A worker's client therefore takes
:data:`DEFAULT_TIMEOUT` (the OpenAI SDK's own default) where the shared client has none;
a request's own timeout still wins, and a timed-out request fails as a transient error
that call retries take up.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import httpx

from symbatcher.binding import run_worker
from symbatcher.overrides import UNCHANGED, EngineOverride

logger = logging.getLogger("symbatcher")

#: set to 0, false, no or off to turn it off where a run is not built in code
ENV_NAME = "SYMBATCHER_CLIENT_PER_THREAD"

#: connections a worker's client keeps alive (it makes one request at a time; a second
#: host or a redirect may want another)
KEEPALIVE = 2

#: a worker's client's timeout where symai's shared one has none: the OpenAI SDK's default
#: (10 minutes for an answer, which a long generation may need; 5 s to connect)
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)

_local = threading.local()  # clients: this thread's clients by ThreadClients id


def _shared_client() -> httpx.Client:
    from symai.backend.transport import default_engine_api_client

    client: httpx.Client = default_engine_api_client()
    return client


class ThreadClients:
    """Stands in for an engine's ``transport_client``: what symai's transport calls
    (``request``, ``stream``) goes to the calling worker's own client.

    The workers' clients copy the shared client's settings (timeout, headers, auth, event
    hooks, redirects, environment) and share its SSL context: each would otherwise load
    the CA bundle itself (about 30 ms of CPU and 0.8 MB a client here). Proxies that the
    environment set (``HTTPS_PROXY``, ``NO_PROXY``, ...: symai's client reads them) a
    worker's client reads there too. A shared client with a transport of its own, or with
    proxies given in code, cannot be copied (their transports belong to it), so then every
    thread uses it, as without symbatcher.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, Any] | None = None
        self._settings_for: httpx.Client | None = None

    def _settings_of(self, shared: httpx.Client) -> dict[str, Any] | None:
        with self._lock:
            if self._settings_for is not shared:
                self._settings, self._settings_for = _copyable_settings(shared), shared
            return self._settings

    def client(self) -> httpx.Client:
        """The calling thread's client: its own if it is a run's worker, else the shared one
        (also for a thread an item carried its run into: nothing would close its own)."""
        if not run_worker():
            return _shared_client()
        clients: dict[int, httpx.Client] | None = getattr(_local, "clients", None)
        if clients is None:
            clients = _local.clients = {}
        client = clients.get(id(self))
        if client is None:
            shared = _shared_client()
            settings = self._settings_of(shared)
            if settings is None:
                return shared
            client = clients[id(self)] = httpx.Client(**settings)
        return client

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return self.client().request(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.client().stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else an engine may ask a client
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.client(), name)


def _copyable_settings(shared: httpx.Client) -> dict[str, Any] | None:
    """What a worker's client needs to behave as ``shared`` does, or None if it cannot."""
    transport = getattr(shared, "_transport", None)
    mounts = getattr(shared, "_mounts", None) or {}
    if type(transport) is not httpx.HTTPTransport or (
        any(mounts.values()) and not _proxies_from_environment(shared, mounts)
    ):
        logger.debug("symbatcher: symai's shared client has its own transport or proxies")
        return None
    context = getattr(getattr(transport, "_pool", None), "_ssl_context", None)
    if not isinstance(context, ssl.SSLContext):
        context = httpx.create_ssl_context(trust_env=shared.trust_env)
    timeout = shared.timeout
    limits = (timeout.connect, timeout.read, timeout.write, timeout.pool)
    return {
        "timeout": timeout if any(t is not None for t in limits) else DEFAULT_TIMEOUT,
        "headers": shared.headers,
        "params": shared.params,
        "auth": shared.auth,
        "event_hooks": shared.event_hooks,
        "follow_redirects": shared.follow_redirects,
        "max_redirects": shared.max_redirects,
        "trust_env": shared.trust_env,
        "base_url": shared.base_url,
        "verify": context,
        "limits": httpx.Limits(max_keepalive_connections=KEEPALIVE),
    }


def _proxies_from_environment(shared: httpx.Client, mounts: dict[Any, Any]) -> bool:
    """Whether ``shared``'s proxies are those the environment gives a client that trusts
    it, as a worker's client does: the same patterns, each to the same proxy (or to none,
    for a ``NO_PROXY`` host). Reads httpx's and httpcore's internals: anything unexpected
    there is a no (the shared client then serves every thread, as before)."""
    if not shared.trust_env:
        return False
    try:
        from httpx._utils import URLPattern, get_environment_proxies

        expected = {URLPattern(key): url for key, url in get_environment_proxies().items()}
        if set(expected) != set(mounts):
            return False
        for pattern, url in expected.items():
            proxy = mounts[pattern]
            if url is None or proxy is None:
                if (url is None) != (proxy is None):
                    return False
                continue
            have, want = proxy._pool._proxy_url, httpx.URL(url)
            if (have.scheme, have.host, have.port) != (want.raw_scheme, want.raw_host, want.port):
                return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    return True


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

#: one for every DynamicEngine block's engine (symai makes one each time a block is
#: entered): a stand-in per engine would give each worker a client per item
_for_blocks = ThreadClients()

#: set on a block's engine for one call of a run's worker, then put back
block_client_per_thread = EngineOverride(
    "transport_client", lambda own: _for_blocks if own is None else UNCHANGED
)
