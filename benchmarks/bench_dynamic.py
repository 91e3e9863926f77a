"""An expression that switches models with symai's ``DynamicEngine``, over real HTTP.

Each item queries once inside ``with DynamicEngine("deepseek:deepseek-v4-flash", ...)``:
symai builds its own DeepSeek engine for the block, and the request goes to the local
server (``symbatcher.testing.server``, in a child process) instead of DeepSeek's host. Rows,
each measured in its own process, alternately, best of ``--repeat``:

- a plain ``ThreadPoolExecutor`` of the same size (what a user writes without symbatcher);
- BatchScheduler as it runs by default;
- BatchScheduler without a client per worker thread (``client_per_thread=False``): the
  block's engine then uses symai's shared HTTP client.

``ideal = ceil(N / workers) x latency``, efficiency = ideal / wall: the latency's bound
alone; at these settings one process is bound by symai's CPU per query instead (building a
DeepSeek engine per block, rendering the prompt), so compare the rows' items/s and CPU
with each other. "calls seen" is what the
run counted as its engine calls (a block's calls were none of the run's before 0.7.5), and
"cost seen" the USD it booked for them at DeepSeek's price.

    python benchmarks/bench_dynamic.py
    python benchmarks/bench_dynamic.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from common import baseline, best_of, measure_in_subprocess, peak_rss_mb

MODEL = "deepseek:deepseek-v4-flash"


def _expression() -> type:
    from symai import Expression, Symbol
    from symai.components import DynamicEngine

    class Label(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            with DynamicEngine(MODEL, api_key="benchmark"):
                return str(Symbol(input).query("Label this review"))

    return Label


# ----------------------------------------------------------------- in the subprocess
def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from symai.backend.engines.neurosymbolic.deepseek import engine as deepseek

    from symbatcher import BatchScheduler, Cost
    from symbatcher.testing import SimulatedEngine, use_engine

    deepseek.DEEPSEEK_CHAT_COMPLETIONS_URL = f"{spec['url']}/v1/chat/completions"
    expr, n, workers = _expression(), spec["n"], spec["workers"]
    data = [f"review {i}: the product did what it said" for i in range(n)]
    extra: dict[str, Any] = {"calls_seen": None, "cost_seen": None}
    with use_engine(SimulatedEngine()):  # the bound engine, which these items never call
        expr()(input="warm-up")
        cpu0, t0 = time.process_time(), time.perf_counter()
        if spec["mode"] == "pool":
            baseline("pool", expr, data, workers)
        else:
            scheduler = BatchScheduler(hooks=[Cost()], client_per_thread=spec["per_thread"])
            results = scheduler(expr=expr, dataset=data, num_workers=workers)
            extra = {"calls_seen": results.stats.engine_calls, "cost_seen": results.stats.cost}
            extra["failed"] = results.stats.failed
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "wall": wall,
        "items_per_s": n / wall,
        "cpu_per_call_ms": cpu / n * 1e3,
        "rss_mb": peak_rss_mb(),
        **extra,
    }


# --------------------------------------------------------------------- the driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=2, help="runs per row, best kept")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.quick:
        args.n, args.repeat = 400, 1

    from symbatcher.testing.server import LocalServer

    rows = {
        "plain thread pool": {"mode": "pool"},
        "symbatcher": {"mode": "scheduler", "per_thread": True},
        "symbatcher, symai's shared HTTP client": {"mode": "scheduler", "per_thread": False},
    }
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in rows}
    with LocalServer(process=True) as server:
        server.configure(latency=args.latency)
        for _ in range(args.repeat):  # alternated, so every row sees the same noise
            for label, spec in rows.items():
                full = {**spec, "url": server.url, "n": args.n, "workers": args.workers}
                runs[label].append(measure_in_subprocess(__file__, full))
    ideal = math.ceil(args.n / args.workers) * args.latency
    print(
        f"{args.n} items, one query each in a DynamicEngine block ({MODEL}), "
        f"{args.workers} workers, {args.latency * 1e3:.0f} ms server latency, "
        f"best of {args.repeat}; ideal {ideal:.2f} s"
    )
    print()
    print(
        "| run | wall s | items/s | efficiency | CPU ms/call | calls seen | cost seen "
        "| peak RSS MB |"
    )
    print("|---" * 8 + "|")
    for label, measured in runs.items():
        best = best_of(measured, least=("cpu_per_call_ms", "rss_mb"), most=("items_per_s",))
        seen = "-" if best["calls_seen"] is None else f"{best['calls_seen']:,}"
        cost = "-" if best["cost_seen"] is None else f"${best['cost_seen']:.4f}"
        print(
            f"| {label} | {best['wall']:.2f} | {best['items_per_s']:.0f} "
            f"| {ideal / best['wall']:.2f} | {best['cpu_per_call_ms']:.2f} | {seen} | {cost} "
            f"| {best['rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
