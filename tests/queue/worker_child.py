"""A ``symbatcher worker`` process for the tests: ``echo`` registered, a simulated engine.

python worker_child.py DIR LATENCY LEASE [OPTION ...]

``TEST_NO_ENGINE`` leaves out the simulated engine (a worker with no engine of its own).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

from symai import Expression, Symbol

from symbatcher.cli import main
from symbatcher.queue import register
from symbatcher.testing import SimulatedEngine, use_engine


@register("echo")
class Echo(Expression):  # type: ignore[misc]
    def forward(self, input: Any, **kwargs: Any) -> Any:
        return Symbol(str(input)).query("Summarize")


if __name__ == "__main__":
    folder, latency, lease = sys.argv[1:4]
    with ExitStack() as stack:
        if not os.environ.get("TEST_NO_ENGINE"):
            stack.enter_context(use_engine(SimulatedEngine(latency=float(latency))))
        options = ["--dir", folder, "--lease", lease, "--workers", "1", *sys.argv[4:]]
        sys.exit(main(["worker", *options]))
