"""pytest fixtures (a pytest plugin, loaded by the ``pytest11`` entry point).

``local_server``: a :class:`~symbatcher.testing.server.LocalServer` on 127.0.0.1 for the test,
in a thread of the test process; change its behaviour with ``local_server.configure(...)``.
``local_vllm``: symai's own ``VLLMEngine`` pointed at it, registered as the
``neurosymbolic`` engine for the test (the previous engine is back afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from symbatcher.testing.server import LocalServer


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture
def local_vllm(local_server: LocalServer) -> Iterator[Any]:
    from symbatcher.local import local_engine
    from symbatcher.testing.engines import use_engine

    engine = local_engine(local_server.url, kind="vllm", timeout=5.0)
    with use_engine(engine):
        yield engine
