"""Throughput, efficiency, CPU per call and peak RSS of BatchScheduler vs a plain thread pool.

One process has two limits: the engine's latency and symai's own CPU per query. The first
row measures that CPU ceiling (a plain sequential loop at zero latency; a second line, the
same loop with symbatcher's engine lookup, which its runs use); every other row
runs N items through BatchScheduler and, for comparison, through a plain
``concurrent.futures.ThreadPoolExecutor`` of the same size calling the same engine.

    ideal      = max(ceil(N / workers) * calls_per_item * latency, N * calls_per_item * cpu)
    efficiency = ideal / measured wall time

Every measurement runs in its own subprocess, so peak RSS is per row. The machine is shared
and noisy, so each row runs ours and the pool alternately ``--repeat`` times and keeps the
best of each (shortest wall time, least CPU). Print a markdown table:

    python benchmarks/bench_scheduler.py            # the full table (several minutes)
    python benchmarks/bench_scheduler.py --quick    # a small smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from itertools import product
from typing import Any

from common import baseline, best_of, measure_in_subprocess, peak_rss_mb


# ----------------------------------------------------------------- in the subprocess
def _expression(calls: int) -> type:
    from symai import Expression, Symbol

    class Chain(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            value = Symbol(input)
            for step in range(calls):
                value = value.query(f"Step {step}: summarize this input")
            return value

    return Chain


def _engine(kind: str, latency: float) -> Any:
    from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine

    cls = SimulatedBatchEngine if kind == "list" else SimulatedEngine
    return cls(latency=latency, record_calls=False)


#: each figure's best reading over repeated runs (see common.best_of)
BEST: dict[str, Any] = {"least": ("cpu_per_call_us", "rss_mb"), "most": ("calls_per_s",)}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from symbatcher import BatchScheduler
    from symbatcher.engine_lookup import fast_engine_lookup
    from symbatcher.testing import use_engine

    mode, n, calls = spec["mode"], spec["n"], spec["calls"]
    expr = _expression(calls)
    data = [f"item {i}" for i in range(n)]
    engine = _engine(spec["engine"], spec["latency"])
    extra: dict[str, Any] = {}
    with use_engine(engine):
        expr()(input="warm-up")  # imports and first-call costs stay out of the figures
        engine.reset()
        cpu0, t0 = time.process_time(), time.perf_counter()
        if mode in ("ceiling", "pool"):
            with fast_engine_lookup() if spec.get("fast") else contextlib.nullcontext():
                threads = baseline(
                    "loop" if mode == "ceiling" else "pool", expr, data, spec.get("workers", 1)
                )
            extra = {"threads": threads}
        elif mode == "scheduler":
            results = BatchScheduler()(
                expr=expr, dataset=data, num_workers=spec["workers"], batch_size=spec["batch"]
            )
            assert results.stats.failed == 0
            extra = {"batches": results.stats.batches, "fill": results.stats.mean_batch_fill}
        elif mode == "stream":
            count = 0
            stream = BatchScheduler().imap(
                expr=expr,
                dataset=(f"item {i}" for i in range(n)),
                num_workers=spec["workers"],
                batch_size=spec["batch"],
            )
            for _ in stream:
                count += 1
            assert count == n
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert engine.call_count == n * calls, (engine.call_count, n * calls)
    return {
        "wall": wall,
        "cpu_per_call_us": cpu / (n * calls) * 1e6,
        "calls_per_s": n * calls / wall,
        "rss_mb": peak_rss_mb(),
        **extra,
    }


# --------------------------------------------------------------------- the driver
def run_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    return measure_in_subprocess(__file__, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", default="20,100,400")
    parser.add_argument("--batch-sizes", default="1,10,50")
    parser.add_argument("--calls", default="1,3")
    parser.add_argument("--engines", default="plain,list")
    parser.add_argument("--stream-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per row, best kept")
    parser.add_argument("--quick", action="store_true", help="n=300, workers 20,100, no stream")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.quick:
        args.n, args.workers, args.batch_sizes, args.stream_n = 300, "20,100", "1,10", 0
        args.repeat = 1

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",")]

    loop = {"mode": "ceiling", "n": 2000, "calls": 1, "engine": "plain", "latency": 0.0}
    plain, fast = [], []
    for _ in range(max(args.repeat, 2)):  # alternated, so both see the same noise
        plain.append(run_in_subprocess(loop))
        fast.append(run_in_subprocess({**loop, "fast": True}))
    ceiling, fast_ceiling = best_of(plain, **BEST), best_of(fast, **BEST)
    cpu = ceiling["cpu_per_call_us"] / 1e6
    print(
        f"symai CPU ceiling: {ceiling['cpu_per_call_us']:.0f} us CPU per call, "
        f"{ceiling['calls_per_s']:.0f} calls/s in a plain sequential loop at zero latency"
    )
    print(
        f"the same loop with symbatcher's engine lookup (on in its runs): "
        f"{fast_ceiling['cpu_per_call_us']:.0f} us CPU per call, "
        f"{fast_ceiling['calls_per_s']:.0f} calls/s"
    )
    print()
    print(
        "| engine | calls/item | workers | batch | items/s | calls/s | ideal s | efficiency "
        "| pool efficiency | pool threads | CPU us/call | pool CPU us/call | mean batch fill "
        "| peak RSS MB |"
    )
    print("|---" * 14 + "|")
    for engine, calls, workers in product(
        args.engines.split(","), ints(args.calls), ints(args.workers)
    ):
        base = {
            "n": args.n,
            "calls": calls,
            "engine": engine,
            "latency": args.latency,
            "workers": workers,
        }
        ideal = max(math.ceil(args.n / workers) * calls * args.latency, args.n * calls * cpu)
        for batch in ints(args.batch_sizes):
            ours_runs, pool_runs = [], []
            for _ in range(args.repeat):
                ours_runs.append(run_in_subprocess({**base, "mode": "scheduler", "batch": batch}))
                pool_runs.append(run_in_subprocess({**base, "mode": "pool"}))
            ours, pool = best_of(ours_runs, **BEST), best_of(pool_runs, **BEST)
            demanded = workers / args.latency
            flag = "" if demanded > ceiling["calls_per_s"] / 4 else " (target 0.9)"
            # a plain engine gets each call on its own: no batches, so no fill
            fill = f"{ours['fill']:.2f}" if ours["batches"] else "-"
            print(
                f"| {engine} | {calls} | {workers} | {batch} | {args.n / ours['wall']:.0f} "
                f"| {ours['calls_per_s']:.0f} | {ideal:.2f} | {ideal / ours['wall']:.2f}{flag} "
                f"| {ideal / pool['wall']:.2f} | {pool['threads']} | {ours['cpu_per_call_us']:.0f} "
                f"| {pool['cpu_per_call_us']:.0f} | {fill} | {ours['rss_mb']:.0f} |",
                flush=True,
            )
    if args.stream_n:
        stream = run_in_subprocess(
            {
                "mode": "stream",
                "n": args.stream_n,
                "calls": 1,
                "engine": "list",
                "latency": 0.0,
                "workers": 100,
                "batch": 10,
            }
        )
        print()
        print(
            f"streaming {args.stream_n:,} items from a generator (list engine, zero latency, "
            f"100 workers): {args.stream_n / stream['wall']:.0f} items/s, "
            f"{stream['cpu_per_call_us']:.0f} us CPU per call, peak RSS {stream['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
