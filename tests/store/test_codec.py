"""Inputs, results and parameters as JSON: the same form in every process, so a resumed
run's fingerprints match the ones it stored."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from symbatcher.store.codec import dumps, to_jsonable

# what a run fingerprints: its items (dumps) and its expression's parameters
PROGRAM = """
import sys
from symbatcher.scheduler import expression_fingerprint
from symbatcher.store.codec import dumps


def post(text):
    return text


class Client:
    pass


class Expr:
    pass


item = {"tags": {"alpha", "beta", "gamma", "delta"}, "seen": frozenset({"x", "y", "z"})}
kwargs = {"post": post, "client": Client(), "stop": {"END", "STOP", "QUIT"}, "kind": Expr}
print(dumps(item))
print(expression_fingerprint(Expr, kwargs))
"""


def _in_process(seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_sets_functions_and_plain_objects_give_the_same_json_in_every_process() -> None:
    first, second = _in_process("1"), _in_process("2")
    assert first == second  # a resume in the next process finds the same fingerprints
    item = json.loads(first[0])
    assert item == {"seen": ["x", "y", "z"], "tags": ["alpha", "beta", "delta", "gamma"]}
    assert "0x" not in first[1]


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Verdict:
    label: str
    score: float
    when: datetime.date
    tags: set[str]


class Model(BaseModel):
    name: str


def test_common_python_values_become_their_natural_json() -> None:
    value = {
        "verdict": Verdict("good", 0.5, datetime.date(2026, 1, 2), {"b", "a"}),
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "color": Color.RED,
        "path": PurePosixPath("/data/in.jsonl"),
        "id": uuid.UUID(int=1),
        "amount": decimal.Decimal("1.10"),
        "model": Model(name="m"),
        "pair": (1, "x"),
        "function": test_common_python_values_become_their_natural_json,
        "class": Verdict,
    }
    assert to_jsonable(value) == {
        "verdict": {"label": "good", "score": 0.5, "when": "2026-01-02", "tags": ["a", "b"]},
        "at": "2026-01-02T03:04:05",
        "color": "red",
        "path": "/data/in.jsonl",
        "id": "00000000-0000-0000-0000-000000000001",
        "amount": "1.10",
        "model": {"name": "m"},
        "pair": [1, "x"],
        "function": f"{__name__}.test_common_python_values_become_their_natural_json",
        "class": f"{__name__}.Verdict",
    }
    assert json.loads(dumps(value)) == to_jsonable(value)  # the encoder agrees


def test_an_object_with_a_default_repr_loses_only_its_address() -> None:
    class Opaque:
        pass

    text = to_jsonable(Opaque())
    assert text.startswith("<") and "Opaque object" in text and "0x" not in text
    assert to_jsonable(Path("x")) == "x"
