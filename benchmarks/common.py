"""What the benchmark scripts share: the hand-written baselines, and one measurement per
subprocess (so peak RSS and CPU are per measurement)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def baseline(mode: str, expr: type, data: list[Any], workers: int = 1) -> None:
    """``loop``: one instance, items in turn. ``pool``: a plain ThreadPoolExecutor, one
    instance per thread (what a user would write without symbatcher)."""
    if mode == "loop":
        instance = expr()
        for item in data:
            instance(input=item)
        return
    local = threading.local()

    def one(item: Any) -> Any:
        if not hasattr(local, "expr"):
            local.expr = expr()
        return local.expr(input=item)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, data))


def best_of(
    runs: list[dict[str, Any]], least: tuple[str, ...] = (), most: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fastest run's figures, with the least (or most) of the named ones seen in any run:
    on a noisy machine each figure's best reading is the closest to the truth."""
    best = dict(min(runs, key=lambda r: r["wall"]))
    for key in least:
        best[key] = min(r[key] for r in runs)
    for key in most:
        best[key] = max(r[key] for r in runs)
    return best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_subprocess(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --measure <spec>`` and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, script, "--measure", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
