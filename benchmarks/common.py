"""What the benchmark scripts share: the hand-written baselines, and one measurement per
subprocess (so peak RSS and CPU are per measurement)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_COUNTING = "SYMBATCHER_BENCH_CALLGRIND"


def baseline(mode: str, expr: type, data: list[Any], workers: int = 1) -> int:
    """``loop``: one instance, items in turn. ``pool``: a plain ThreadPoolExecutor, one
    instance per thread (what a user would write without symbatcher). Returns the number
    of threads that ran items: a ThreadPoolExecutor starts a thread per submit only while
    none of its threads is idle, so under load it may run fewer than ``workers``."""
    if mode == "loop":
        instance = expr()
        for item in data:
            instance(input=item)
        return 1
    local = threading.local()
    threads: set[int] = set()

    def one(item: Any) -> Any:
        if not hasattr(local, "expr"):
            local.expr = expr()
            threads.add(threading.get_ident())
        return local.expr(input=item)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, data))
    return len(threads)


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


def measure_in_subprocess(
    script: str, spec: dict[str, Any], flag: str = "--measure"
) -> dict[str, Any]:
    """Run ``script <flag> <spec>`` and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, script, flag, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def can_count_instructions() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


@contextlib.contextmanager
def counted() -> Iterator[None]:
    """Around the part of a measurement whose instructions count, when it runs under
    :func:`instructions_in_subprocess` (a no-op otherwise)."""
    if not os.environ.get(_COUNTING):
        yield
        return
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)


def instructions_in_subprocess(
    script: str, spec: dict[str, Any], hash_seed: int = 0, flag: str = "--measure"
) -> tuple[int, dict[str, Any]]:
    """Instructions executed (all threads) inside :func:`counted` blocks of ``script
    <flag> <spec>``, counted by valgrind's callgrind, and what the script printed (its
    last line, JSON). Unlike CPU time they do not move with the load on a shared machine,
    so small differences between runs can be seen; but threads run one at a time under
    valgrind, so contention costs are not in them, and everything runs some 50 times
    slower, so a workload with waits in it should scale them to stay the same workload.

    The hash seed is fixed: with a random one, str-keyed dict lookups (a tenth of what a
    symai query executes) probe differently in every process, which moved one count by
    about 1.5 %, more than some differences being measured; with a fixed one two counts of
    a run agree within 0.05 %."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                script,
                flag,
                json.dumps(spec),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, _COUNTING: "1", "PYTHONHASHSEED": str(hash_seed)},
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"counting {spec} failed:\n{done.stderr[-3000:]}")
    return int(found.group(1)), json.loads(done.stdout.strip().splitlines()[-1])
