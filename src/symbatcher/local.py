"""symai's own vLLM and llama.cpp chat engines, pointed at an OpenAI-compatible server.

symai 2.2 reads the server's address from ``SYMSERVER_CONFIG`` (``"online"``, ``"--host"``,
``"--port"``) once, when the engine is built, and the engine keeps it. So we set those keys
only for the construction and put the old values back: the engine talks to the server, and
symai's global config is as it was. Register the engine to use it::

    from symai.functional import EngineRepository
    engine = local_engine("http://127.0.0.1:8000", kind="vllm")
    EngineRepository.register("neurosymbolic", engine, allow_engine_override=True)

At construction the vLLM engine asks ``GET /v1/models`` (twice) and llama.cpp ``GET /props``;
the vLLM engine falls back to defaults when that fails, so :func:`check_server` asks first
(the command line does, so a wrong address is an error before a run starts, not a run of
connection errors). :func:`registered` puts an engine under symai's names for a block;
:func:`serving` does all three (what ``symbatcher run/serve/demo --engine-url`` use).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from symbatcher.errors import EngineNotAvailableError
from symbatcher.symai_setup import import_symai

KINDS = ("vllm", "llamacpp")
_SERVER_KEYS = ("online", "--host", "--port")
#: what each kind's engine asks at construction: the server must answer it
_PROBE = {"vllm": "/v1/models", "llamacpp": "/props"}


def server_address(url: str) -> tuple[str, int]:
    """``http://host:port`` -> (host, port); anything else is a ValueError naming the URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected a URL like http://127.0.0.1:8000, got {url!r}")
    return parts.hostname, parts.port


def check_server(url: str, kind: str = "vllm", *, timeout: float = 5.0) -> None:
    """Raise :class:`EngineNotAvailableError` unless ``url`` answers what ``kind``'s engine
    asks at construction."""
    import httpx

    host, port = server_address(url)
    probe = f"http://{host}:{port}{_PROBE[kind]}"
    try:
        httpx.get(probe, timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise EngineNotAvailableError(
            f"the {kind} server at {url} does not answer GET {_PROBE[kind]} "
            f"({type(exc).__name__}: {exc}); start it, or correct the URL"
        ) from None


#: seconds a request to a self-hosted server may take unless told otherwise: room for a
#: long generation on a loaded server, but an end to a stalled one
DEFAULT_TIMEOUT = 600.0


@contextmanager
def serving(
    url: str,
    kind: str = "vllm",
    names: Sequence[str] = ("neurosymbolic",),
    *,
    timeout: float | None = None,
) -> Iterator[Any]:
    """symai's ``kind`` engine for the server at ``url``, under ``names`` for the block,
    once the server has answered what the engine asks (:func:`check_server`)."""
    check_server(url, kind)
    with registered(local_engine(url, kind, timeout=timeout), names) as engine:
        yield engine


@contextmanager
def registered(engine: Any, names: Sequence[str] = ("neurosymbolic",)) -> Iterator[Any]:
    """``engine`` under each of ``names`` in symai's EngineRepository for the block; what
    was there before is back afterwards, also after an exception."""
    import_symai()
    from symai.functional import EngineRepository

    engines = EngineRepository()._engines
    before = {name: (name in engines, engines.get(name)) for name in names}
    try:
        for name in names:
            EngineRepository.register(name, engine, allow_engine_override=True)
        yield engine
    finally:
        for name, (had, previous) in before.items():
            if had:
                EngineRepository.register(name, previous, allow_engine_override=True)
            else:
                engines.pop(name, None)


def _served_model(url: str) -> str | None:
    """The id the server at ``url`` gives its model (``GET /v1/models``), if it says."""
    import httpx

    host, port = server_address(url)
    try:
        response = httpx.get(f"http://{host}:{port}/v1/models", timeout=5.0)
        response.raise_for_status()
        model = response.json()["data"][0]["id"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return None
    return model if isinstance(model, str) and model else None


def local_engine(
    url: str,
    kind: str = "vllm",
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    api_key: str | None = None,
) -> Any:
    """A symai chat engine (``VLLMEngine`` or ``LlamaCppEngine``) that talks to ``url``.

    ``timeout`` (seconds per request) defaults to :data:`DEFAULT_TIMEOUT`: symai's own
    client has none, so a server that stalls would hold its call, and its item, forever.
    """
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    host, port = server_address(url)
    import_symai()
    from symai.backend import settings

    config = settings.SYMSERVER_CONFIG
    saved = {key: config[key] for key in _SERVER_KEYS if key in config}
    config.update({"online": True, "--host": host, "--port": port})
    try:
        if kind == "vllm":
            from symai.backend.engines.neurosymbolic.vllm.engine import VLLMEngine

            return VLLMEngine(
                api_key=api_key,
                model="vllm",
                client_timeout=timeout,
                client_max_retries=max_retries,
            )
        from symai.backend.engines.neurosymbolic.llama_cpp.engine import LlamaCppEngine

        engine = LlamaCppEngine(
            api_key=api_key,
            model="llamacpp",
            client_timeout=timeout,
            client_max_retries=max_retries,
        )
        if served := _served_model(url):
            # its answers do not name the model and it keeps no id of it: where the vLLM
            # engine has ``server_model`` (asked at construction), so does this one, and a
            # run's cost and record name the served model, not "llamacpp"
            engine.server_model = served
        return engine
    finally:
        for key in _SERVER_KEYS:
            config.pop(key, None)
        config.update(saved)
