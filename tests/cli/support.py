"""What the command tests share: a module of expressions as a user has one beside their
data, the data files they write, and the command run as a user runs it (a subprocess)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

#: a number per module written, so each test imports its own (sys.modules keeps them)
module_numbers = itertools.count()

PIPELINES = """
import os

from symai import Expression, Symbol


class Echo(Expression):
    def forward(self, input, **kwargs):
        return Symbol(str(input)).query("Summarize")


class Named(Expression):
    def forward(self, review, **kwargs):
        return Symbol(review["text"]).query("Summarize")


class Interrupted(Expression):
    def forward(self, input, **kwargs):
        if input == "item-3" and os.path.exists("interrupt"):
            raise KeyboardInterrupt  # as a Ctrl-C would
        return Symbol(str(input)).query("Summarize")


class Styled(Expression):
    def __init__(self, style, **kwargs):
        super().__init__(**kwargs)
        self.style = style

    def forward(self, input, tone="plain", **kwargs):
        return Symbol(str(input)).query(f"{self.style}, {tone}")


class Keyless(Expression):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError("MY_TOOL_KEY is not set")


class Verdict(Expression):
    def forward(self, input, **kwargs):
        answer = str(Symbol(str(input)).query("Judge"))
        return {"verdict": "ok", "length": len(answer)}  # keys not in alphabetical order


class Blocked(Expression):
    def forward(self, input, **kwargs):
        if os.path.exists("blocked"):
            raise RuntimeError("blocked")
        return Symbol(str(input)).query("Summarize")
"""


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, items: list[object], bad_after: int | None = None) -> Path:
    rows = [json.dumps(item) for item in items]
    if bad_after is not None:
        rows.insert(bad_after, "{broken")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symbatcher", *args],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )
