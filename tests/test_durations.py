"""Time spans as people read them."""

from __future__ import annotations

import pytest

from symbatcher.durations import spoken

SPANS = [
    (0.4, "0 s"),
    (119, "119 s"),
    (120, "2 min"),
    (7199, "120 min"),
    (7200, "2.0 h"),
    (36 * 3600, "36.0 h"),
    (2 * 86400, "2 days"),
    (30 * 86400, "30 days"),
]


@pytest.mark.parametrize("seconds, text", SPANS)
def test_each_span_in_the_unit_a_person_would_use(seconds: float, text: str) -> None:
    assert spoken(seconds) == text
