"""symai's own vLLM and llama.cpp chat engines, pointed at an OpenAI-compatible server.

symai 2.2 reads the server's address from ``SYMSERVER_CONFIG`` (``"online"``, ``"--host"``,
``"--port"``) once, when the engine is built, and the engine keeps it. So we set those keys
only for the construction and put the old values back: the engine talks to the server, and
symai's global config is as it was. Register the engine to use it::

    from symai.functional import EngineRepository
    engine = local_engine("http://127.0.0.1:8000", kind="vllm")
    EngineRepository.register("neurosymbolic", engine, allow_engine_override=True)

At construction the vLLM engine asks ``GET /v1/models`` (twice) and llama.cpp ``GET /props``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from symbatcher.symai_setup import import_symai

KINDS = ("vllm", "llamacpp")
_SERVER_KEYS = ("online", "--host", "--port")


def local_engine(
    url: str,
    kind: str = "vllm",
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    api_key: str | None = None,
) -> Any:
    """A symai chat engine (``VLLMEngine`` or ``LlamaCppEngine``) that talks to ``url``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected a URL like http://127.0.0.1:8000, got {url!r}")
    import_symai()
    from symai.backend import settings

    config = settings.SYMSERVER_CONFIG
    saved = {key: config[key] for key in _SERVER_KEYS if key in config}
    config.update({"online": True, "--host": parts.hostname, "--port": parts.port})
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

        return LlamaCppEngine(
            api_key=api_key,
            model="llamacpp",
            client_timeout=timeout,
            client_max_retries=max_retries,
        )
    finally:
        for key in _SERVER_KEYS:
            config.pop(key, None)
        config.update(saved)
