"""symbatcher against real HTTP: symai's own vLLM engine talking to the local server.

The server (``symbatcher.testing.server``) runs in a child process, so its CPU does not
compete with the client's for the GIL; each measurement runs in a process of its own.
Rows, each measured in the same run:

1. symai's CPU per query and queries/s in a plain loop at zero server latency: the
   ceiling of one process; then the same with symbatcher's template cache and engine
   lookup (which every run uses by default, see ``symbatcher.templates`` and
   ``symbatcher.engine_lookup``; a loop's one thread needs no client of its own).
2. N requests at 100 ms server latency with 50 and 200 workers, through BatchScheduler
   (with and without its savings: template cache, engine lookup, a client per thread)
   and through a plain
   ``ThreadPoolExecutor`` of the same size calling the same engine;
   ``ideal = max(ceil(N / workers) x latency, N x CPU per query)``, efficiency = ideal / wall,
   against symai's own CPU per query and against the row's own ceiling.
3. The server limits to 3,000 RPM and symbatcher is told the same limit.
4. The server limits to 3,000 RPM and symbatcher is told nothing: the rate it settles at
   (from half-way to 90% of the run) and the 429s it met.

The machine is shared and noisy: rows 1-2 run ours and the pool alternately ``--repeat``
times and keep the best of each; compare within a row.

    python benchmarks/bench_http.py            # the full table (about 6 minutes)
    python benchmarks/bench_http.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import threading
import time
from typing import Any

from common import baseline, best_of, measure_in_subprocess, peak_rss_mb


def _one_call_expression() -> type:
    from symai import Expression, Symbol

    class Ask(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(input).query("Answer briefly")

    return Ask


def _post(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    if body is None:
        result: dict[str, Any] = httpx.get(f"{url}{path}", timeout=10).json()
    else:
        result = httpx.post(f"{url}{path}", json=body, timeout=10).json()
    return result


# ----------------------------------------------------------------- in the subprocess
def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from symbatcher import BatchScheduler, RateLimit, local_engine
    from symbatcher.engine_lookup import fast_engine_lookup
    from symbatcher.templates import cached_templates
    from symbatcher.testing import use_engine

    url, mode, n = spec["url"], spec["mode"], spec["n"]
    expr = _one_call_expression()
    engine = local_engine(url, kind="vllm", timeout=30.0)
    data = [f"request {i}: what is {i} + {i}?" for i in range(n)]
    extra: dict[str, Any] = {}
    with use_engine(engine):
        expr()(input="warm-up")
        _post(url, "/_config", {**spec["server"], "reset": True})
        cpu0, t0 = time.process_time(), time.perf_counter()
        if mode in ("loop", "pool"):
            with contextlib.ExitStack() as savings:
                if spec.get("cache"):  # what a run of symbatcher does to symai's query
                    savings.enter_context(cached_templates())
                    savings.enter_context(fast_engine_lookup())
                baseline(mode, expr, data, spec.get("workers", 1))
        else:
            hooks = [RateLimit(rpm=spec["rpm"])] if spec.get("rpm") else []
            marks: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample() -> None:  # the server's count of answers, twice a second
                import httpx

                with httpx.Client(timeout=10) as client:  # one connection, not one a sample
                    while not stop.wait(0.5):
                        ok = client.get(f"{url}/_stats").json()["ok"]
                        marks.append((time.perf_counter(), ok))

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                on = spec.get("cache", True)  # symbatcher's savings on symai's CPU per query
                scheduler = BatchScheduler(
                    hooks=hooks, cache_templates=on, client_per_thread=on, fast_lookup=on
                )
                results = scheduler(
                    expr=expr, dataset=data, num_workers=spec["workers"], batch_size=5
                )
            finally:
                stop.set()
                sampler.join()
            extra["failed"] = results.stats.failed
            # settled: from half-way to 90% (the last items finish at a falling rate)
            span = marks[-1][0] - t0 if marks else 0.0
            mid = [m for m in marks if t0 + 0.5 * span <= m[0] <= t0 + 0.9 * span]
            if len(mid) >= 2:
                extra["settled_rpm"] = (mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0]) * 60
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = _post(url, "/_stats")
    return {
        "wall": wall,
        "cpu_per_query_ms": cpu / n * 1e3,
        "queries_per_s": n / wall,
        "rpm": server["ok"] / wall * 60,
        "ok": server["ok"],
        "rate_limited": server["rate_limited"],
        "connections": server["connections"],
        "rss_mb": peak_rss_mb(),
        **extra,
    }


# --------------------------------------------------------------------- the driver
def run(spec: dict[str, Any]) -> dict[str, Any]:
    return measure_in_subprocess(__file__, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", default="50,200")
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--rate-n", type=int, default=2000, help="requests in the RPM rows")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row, best kept")
    parser.add_argument("--only", choices=("throughput", "rate"), help="one table only")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.quick:
        args.n, args.rate_n, args.workers, args.repeat = 600, 400, "50", 1

    from symbatcher.testing.server import LocalServer

    with LocalServer(process=True) as server:
        url = server.url
        loop = {"url": url, "mode": "loop", "n": 500, "server": {"latency": 0.0}}
        plain, cached = [], []
        for _ in range(2):  # alternated, so both see the same noise
            plain.append(run(loop))
            cached.append(run({**loop, "cache": True}))
        ceilings = {
            False: min(plain, key=lambda r: r["cpu_per_query_ms"]),
            True: min(cached, key=lambda r: r["cpu_per_query_ms"]),
        }
        labels = ((False, "symai"), (True, "with symbatcher's template cache and engine lookup"))
        for cache, text in labels:
            print(
                f"CPU ceiling, {text} (vLLM engine, plain loop, zero latency): "
                f"{ceilings[cache]['cpu_per_query_ms']:.2f} ms CPU per query, "
                f"{ceilings[cache]['queries_per_s']:.0f} queries/s"
            )
        cpu = {cache: row["cpu_per_query_ms"] / 1e3 for cache, row in ceilings.items()}
        if args.only != "rate":
            throughput_table(args, url, cpu)
        if args.only != "throughput":
            rate_table(args, url)


def throughput_table(args: argparse.Namespace, url: str, cpu: dict[bool, float]) -> None:
    """``efficiency``: against the ideal from symai's own CPU per query (a plain loop);
    ``vs own ceiling``: from the loop with the same savings setting as the row, so it
    shows what the scheduling costs apart from the cheaper queries."""
    print()
    print(
        "| run | workers | requests | wall s | queries/s | ideal s | efficiency "
        "| ideal s, own ceiling | efficiency vs own ceiling | CPU ms/query | 429s "
        "| connections | peak RSS MB |"
    )
    print("|---" * 13 + "|")
    latency = {"latency": args.latency, "rpm": None, "tpm": None}
    rows: dict[str, tuple[str, dict[str, Any], bool]] = {
        "cached": ("symbatcher", {"mode": "scheduler"}, True),
        "uncached": (
            "symbatcher, its savings off (template cache, engine lookup, client per thread)",
            {"mode": "scheduler", "cache": False},
            False,
        ),
        "pool": ("plain thread pool", {"mode": "pool"}, False),
    }
    for workers in [int(w) for w in args.workers.split(",")]:
        rounds = math.ceil(args.n / workers) * args.latency
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key in rows}
        for _ in range(args.repeat):  # alternated, so all see the same noise
            for key, (_, mode, _) in rows.items():
                spec = {"url": url, "n": args.n, "workers": workers, **mode}
                runs[key].append(run({**spec, "server": latency}))
        for key, (label, _, cache) in rows.items():
            row = best_of(runs[key], least=("cpu_per_query_ms",))
            plain, own = max(rounds, args.n * cpu[False]), max(rounds, args.n * cpu[cache])
            print(
                f"| {label} | {workers} | {args.n} | {row['wall']:.1f} "
                f"| {row['queries_per_s']:.0f} | {plain:.1f} | {plain / row['wall']:.2f} "
                f"| {own:.1f} | {own / row['wall']:.2f} "
                f"| {row['cpu_per_query_ms']:.2f} | {row['rate_limited']} "
                f"| {row['connections']} | {row['rss_mb']:.0f} |",
                flush=True,
            )


def rate_table(args: argparse.Namespace, url: str) -> None:
    print()
    print(
        "| server limit RPM | symbatcher limit RPM | workers | requests | achieved RPM "
        "| of the limit | settled RPM (50-90%) | 429s | failed |"
    )
    print("|---" * 9 + "|")
    limited = {"latency": args.latency, "rpm": args.rpm, "burst_seconds": 1.0}
    for told in (args.rpm, None):
        row = run(
            {
                "url": url,
                "mode": "scheduler",
                "n": args.rate_n,
                "workers": 200,
                "server": limited,
                "rpm": told,
            }
        )
        settled = row.get("settled_rpm")
        told_text = f"{told:.0f}" if told else "none (learned)"
        settled_text = f"{settled:.0f} ({settled / args.rpm:.3f})" if settled else "-"
        print(
            f"| {args.rpm:.0f} | {told_text} | 200 | {args.rate_n} | {row['rpm']:.0f} "
            f"| {row['rpm'] / args.rpm:.3f} | {settled_text} | {row['rate_limited']} "
            f"| {row['failed']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
