"""``symbatcher.local``: engines for a server, registered for a block and put back."""

from __future__ import annotations

import pytest
from symai.functional import EngineRepository

from symbatcher.local import registered
from symbatcher.testing import SimulatedEngine


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
