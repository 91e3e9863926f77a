"""symai's hosted-provider engines pointed at a local server, for tests and dry runs.

symai's engines for hosted providers (DeepSeek, OpenAI, Anthropic, ...) post to fixed
URLs through one module-level ``httpx.Client`` (an engine with its own ``transport_client``
aside). Inside :func:`hosted_engines_at` that client sends every request to the given
server on 127.0.0.1 instead, a chat completion at ``/v1/chat/completions``, so a pipeline
that switches models with ``DynamicEngine`` runs whole against
:mod:`symbatcher.testing.server` with a dummy key, and nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

#: no cap on connections, each kept alive: httpcore 1.0.9's pool, shared by many threads,
#: can close a connection it has just handed to a request (surplus keep-alive, or to make
#: room) while that request is on it (encode/httpcore#1110): the request fails with EBADF,
#: symai's transport sends it again and the server answers it twice, or it hangs until its
#: read timeout. With no surplus and always room, the pool closes none.
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)


class _ToLocal(httpx.HTTPTransport):
    def __init__(self, url: str) -> None:
        super().__init__(limits=_LIMITS)
        self._target = httpx.URL(url)
        if self._target.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"hosted_engines_at takes a local server's URL, got {url!r}")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/chat/completions"):
            path = "/v1/chat/completions"
        request.url = request.url.copy_with(
            scheme=self._target.scheme, host=self._target.host, port=self._target.port, path=path
        )
        return super().handle_request(request)


@contextmanager
def hosted_engines_at(url: str) -> Iterator[httpx.Client]:
    """For the block, symai's shared engine client sends every request to ``url`` (a
    local server's); the client symai had is back afterwards."""
    from symai.backend import transport

    own = transport.ENGINE_API_CLIENT
    client = httpx.Client(transport=_ToLocal(url), timeout=30.0)
    transport.ENGINE_API_CLIENT = client
    try:
        yield client
    finally:
        transport.ENGINE_API_CLIENT = own
        client.close()
