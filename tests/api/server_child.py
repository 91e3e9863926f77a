"""A symbatcher service for the API tests: `echo` and `styled` registered, a simulated engine.

python server_child.py DIR PORT LATENCY LEASE TOKEN DATA_DIR [ENGINE_URL [OPTION ...]]

With ENGINE_URL it is the ``symbatcher serve`` command instead, sending the calls to the
server there (its token from ``SYMBATCHER_API_TOKEN``; LATENCY and TOKEN unused), with any
further OPTIONs of the command. ``TEST_HOSTED_AT`` (a local server's URL) sends symai's
hosted-provider engines' requests there; ``TEST_WORKERS`` runs that many jobs at once;
``TEST_NO_ENGINE`` leaves out the simulated engine (a service with no engine of its own).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

from symai import Expression, Symbol

from symbatcher.api.serve import serve
from symbatcher.cli import main
from symbatcher.queue import register
from symbatcher.testing import SimulatedEngine, use_engine
from symbatcher.testing.hosted import hosted_engines_at


@register("echo")
class Echo(Expression):  # type: ignore[misc]
    def forward(self, input: Any, **kwargs: Any) -> Any:
        return Symbol(str(input)).query("Summarize")


@register("styled")
class Styled(Expression):  # type: ignore[misc]
    def __init__(self, style: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.style = style

    def forward(self, input: Any, tone: str = "plain", **kwargs: Any) -> Any:
        return Symbol(str(input)).query(f"{self.style}, {tone}")


if __name__ == "__main__":
    folder, port, latency, lease, token, data_dir = sys.argv[1:7]
    if len(sys.argv) > 7:
        serve_args = ["--dir", folder, "--port", port, "--workers", "1", "--lease", lease]
        serve_args += ["--data-dir", data_dir, "--engine-url", sys.argv[7], *sys.argv[8:]]
        sys.exit(main(["serve", *serve_args]))
    with ExitStack() as stack:
        if not os.environ.get("TEST_NO_ENGINE"):
            stack.enter_context(use_engine(SimulatedEngine(latency=float(latency))))
        if hosted := os.environ.get("TEST_HOSTED_AT"):
            stack.enter_context(hosted_engines_at(hosted))
        serve(
            folder,
            port=int(port),
            workers=int(os.environ.get("TEST_WORKERS", "1")),
            lease=float(lease),
            token=token or None,
            data_dirs=[data_dir],
        )
