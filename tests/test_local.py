"""``symbatcher.local``: engines for a server, registered for a block and put back."""

from __future__ import annotations

import pytest
from symai.functional import EngineRepository

from symbatcher.local import registered
from symbatcher.testing import SimulatedEngine
from symbatcher.testing.server import LocalServer


def test_registered_puts_back_what_each_name_held_also_after_an_exception() -> None:
    before = SimulatedEngine()
    with registered(before, ["neurosymbolic"]):
        ours = SimulatedEngine()
        with pytest.raises(RuntimeError), registered(ours, ["neurosymbolic", "symbatcher_x"]):
            assert EngineRepository.get("neurosymbolic") is ours
            assert EngineRepository.get("symbatcher_x") is ours
            raise RuntimeError("boom")
        assert EngineRepository.get("neurosymbolic") is before
        assert "symbatcher_x" not in EngineRepository()._engines  # it held nothing before


def test_an_engine_for_a_server_has_a_request_timeout_unless_told_one(
    local_server: LocalServer,
) -> None:
    """symai's own client has none: a stalled server would hold its call forever."""
    from symbatcher.local import DEFAULT_TIMEOUT, local_engine

    for kind in ("vllm", "llamacpp"):
        assert local_engine(local_server.url, kind).client_timeout == DEFAULT_TIMEOUT
        assert local_engine(local_server.url, kind, timeout=2.5).client_timeout == 2.5


def test_a_llamacpp_engine_knows_the_id_of_the_model_it_is_served_by(
    local_server: LocalServer,
) -> None:
    """symai's llama.cpp engine keeps none, and its answers name none: a run's cost and
    record called every such model "llamacpp"."""
    from symbatcher.local import local_engine
    from symbatcher.pricing import model_of
    from symbatcher.testing.server import MODEL_ID

    engine = local_engine(local_server.url, "llamacpp")
    assert engine.server_model == MODEL_ID and model_of(engine, {}) == MODEL_ID
