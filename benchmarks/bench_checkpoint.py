"""What durable state costs, and how fast a large run resumes.

1. Checkpointing per item. First the hooks' own work per item measured alone (Checkpoint
   and Cost driven directly, the store's writer thread included). Then the same workload
   (plain simulated engine, 50 ms per call, one call per item; 20 workers, latency-bound,
   and 100 workers, near symai's CPU ceiling) with no hooks, a no-op hook, Cost only, and
   Checkpoint (+Cost) at ``synchronous=FULL`` (fsync per group commit) and ``NORMAL``;
   each in its own subprocess, alternating, best of ``--repeat``. Targets: <= 50 us
   amortised per item, <= 10 % of wall time.
   The latency-bound workload once more under valgrind's callgrind: instructions per item
   for each mode (all threads), which unlike CPU time do not move with the load of a
   shared machine, turned into microseconds at the plain run's own rate; the store's
   share is the checkpoint row less the Cost row. Waits are stretched by valgrind's
   slowdown so that the workload stays latency-bound; the median over three hash seeds.
   ``--no-instructions`` skips it.
2. Resume: a 100,000-item run with 99,000 items done (the state written directly through
   the store's schema), reopened with BatchManager: seconds until its first new item
   reaches the engine. Target: < 2 s.

    python benchmarks/bench_checkpoint.py            # full (about half an hour)
    python benchmarks/bench_checkpoint.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast


def _expression() -> type:
    from symai import Expression, Symbol

    class Summarize(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(input).query("Summarize this input")

    return Summarize


def _hooks(mode: str, run_dir: Path, slowdown: float = 1.0) -> list[Any]:
    from symbatcher.hooks import Checkpoint, Cost, Hook

    if mode == "cost":
        return [Cost({"simulated": (1.0, 2.0)})]
    if mode == "noop":

        class Noop(Hook):
            def on_item_done(self, item: Any, outcome: Any) -> None:
                return None

        return [Noop()]
    if mode.startswith("checkpoint"):
        checkpoint = Checkpoint(
            run_dir,
            synchronous="NORMAL" if mode.endswith("normal") else "FULL",
            commit_interval=0.02 * slowdown,
        )
        return [checkpoint, Cost({"simulated": (1.0, 2.0)})]
    return []


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from common import counted

    from symbatcher import BatchScheduler
    from symbatcher.testing import SimulatedEngine, use_engine

    n, mode = spec["n"], spec["mode"]
    slowdown = spec.get("slowdown", 1.0)  # under valgrind: every wait that much longer
    expr = _expression()
    latency = spec["latency"] * slowdown
    with tempfile.TemporaryDirectory() as tmp:
        with use_engine(SimulatedEngine(latency=latency, record_calls=False)):
            # a short run first, so that first-use costs (imports, symai's caches) are paid
            BatchScheduler(hooks=_hooks(mode, Path(tmp) / "warm-up"))(
                expr=expr, dataset=[f"warm-up {i}" for i in range(50)], num_workers=10
            )
            scheduler = BatchScheduler(
                hooks=_hooks(mode, Path(tmp) / "run", slowdown), linger=0.005 * slowdown
            )
            with counted():
                cpu0, t0 = time.process_time(), time.perf_counter()
                results = scheduler(
                    expr=expr,
                    dataset=[f"item {i}" for i in range(n)],
                    num_workers=spec["workers"],
                    batch_size=spec["batch"],
                )
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert results.ok and len(results) == n
    return {"wall": wall, "cpu_us_per_item": cpu / n * 1e6}


def hooks_alone(spec: dict[str, Any]) -> dict[str, Any]:
    """The Checkpoint's (and Cost's) own work per item, writer thread included, with no
    engine and no other threads competing: what the hooks cost before contention."""
    from common import counted
    from symai import Symbol

    from symbatcher.hooks import Checkpoint, Cost
    from symbatcher.hooks.base import ItemContext, RunContext
    from symbatcher.hooks.chain import HookChain, working_on
    from symbatcher.testing import SimulatedEngine

    n = spec["n"]
    data = [f"item {i}" for i in range(n)]
    engine = SimulatedEngine()
    answer = engine.answer("a prompt of some length")
    outcome = Symbol("sim(item)")
    with tempfile.TemporaryDirectory() as tmp:
        hooks: list[Any] = [Cost({"simulated": (1, 2)})]
        if spec.get("store", True):
            hooks.insert(0, Checkpoint(Path(tmp) / "run", synchronous=spec["sync"]))
        chain = HookChain(hooks)
        run = RunContext(
            expression_fingerprint="x", dataset=data, total=n, num_workers=1, model=None
        )
        chain.on_start(run)
        pending = []
        with counted():
            cpu0 = time.process_time()
            for index in range(n):
                item = ItemContext(index, data[index], run)
                chain.restore(item)
                chain.item_start(item)
                with working_on(item):
                    chain.run_call("neurosymbolic", engine, None, lambda: answer)
                pending.extend(chain.item_done(item, outcome))
            for future in pending:
                future.result()
            cpu = time.process_time() - cpu0
        chain.on_end(run)
    return {"cpu_us_per_item": cpu / n * 1e6}


def resume(spec: dict[str, Any]) -> dict[str, Any]:
    from symbatcher import BatchManager
    from symbatcher.hooks.checkpoint import dataset_fingerprint
    from symbatcher.scheduler import expression_fingerprint
    from symbatcher.store.codec import dumps
    from symbatcher.store.sqlite import SQLiteStore
    from symbatcher.testing import SimulatedEngine, use_engine

    total, done = spec["total"], spec["done"]
    data = [f"item {i}" for i in range(total)]
    expr = _expression()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        from symbatcher.store.codec import fingerprint

        dataset_fp = dataset_fingerprint(data)
        with SQLiteStore(run_dir) as store:
            store.write_meta(
                {
                    "run_id": "bench",
                    "created_at": "",
                    "expression": expression_fingerprint(expr, {}),
                    "dataset": dataset_fp,
                    "total": total,
                    "items_per_job": 100,
                    "status": "interrupted",
                }
            )
            conn = cast(SQLiteStore, store)._conn
            assert conn is not None
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO items (idx, fingerprint, status, input, result, attempts, "
                "prompt_tokens, completion_tokens, cost, job, started_at, completed_at) "
                "VALUES (?, ?, 'succeeded', ?, ?, 1, 10, 10, 0.00003, ?, 0, 0)",
                (
                    (i, fingerprint(text), text, dumps(f"sim({data[i]})"), i // 100)
                    for i, text in ((i, dumps(data[i])) for i in range(done))
                ),
            )
            conn.execute("COMMIT")
        first_call = threading.Event()
        stamp: list[float] = []

        class Engine(SimulatedEngine):
            def forward(self, argument: Any) -> Any:
                if not first_call.is_set():
                    stamp.append(time.perf_counter())
                    first_call.set()
                return super().forward(argument)

        from common import peak_rss_mb

        before = peak_rss_mb()  # the dataset and the state written above
        with use_engine(Engine(latency=0.0, record_calls=False)):
            manager = BatchManager(expr, data, state_path=run_dir, retry=None)
            t0 = time.perf_counter()
            stats = manager.run(print_progress=False)
            wall = time.perf_counter() - t0
        assert stats.succeeded == total, stats
    return {
        "first_new_item_s": stamp[0] - t0,
        "wall": wall,
        "rss_before_mb": before,
        "rss_peak_mb": peak_rss_mb(),
    }


def run_in_subprocess(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    from common import measure_in_subprocess

    return measure_in_subprocess(__file__, spec, flag=f"--{kind}")


def instructions(
    modes: list[str], sizes: tuple[int, int], plain_cpu_us: float, repeat: int
) -> None:
    """The latency-bound workload again, each mode's instructions counted by callgrind:
    figures that do not move with the machine's load. Each mode runs at two sizes; the
    difference over the extra items is the cost per item once a run's fixed costs (opening
    the store, fingerprinting the dataset, the last commit) are spread over many items.

    Under valgrind code runs tens of times slower while the engine's 50 ms would not, so
    the run would turn CPU-bound: commits would hold one item each instead of about ten,
    and every worker would find its last commit still pending. So every wait (latency,
    commit interval, linger) is stretched by valgrind's slowdown, measured first on the
    plain run: the same workload, in slow motion. Each repeat runs every mode under one
    hash seed (see ``instructions_in_subprocess``). Microseconds are at the rate the plain
    run executes instructions (its instructions per item over its CPU per item in the
    table above). Only instructions are counted: ``synchronous`` FULL and NORMAL differ
    in fsync, a system call, so only one is counted."""
    from common import can_count_instructions, instructions_in_subprocess

    if not can_count_instructions():
        print("Instructions: valgrind is not installed; skipped\n")
        return
    small, large = sizes
    spec = {"latency": 0.05, "workers": 20, "batch": 10}
    _, probe = instructions_in_subprocess(__file__, {**spec, "n": small, "mode": "plain"})
    slowdown = max(1.0, probe["cpu_us_per_item"] / plain_cpu_us)

    def count(job: tuple[str, int, int]) -> int:
        mode, n, seed = job  # each repeat under its own hash seed, the same for every mode
        got, _ = instructions_in_subprocess(
            __file__, {**spec, "n": n, "mode": mode, "slowdown": slowdown}, hash_seed=seed
        )
        return got

    # valgrind runs one thread at a time, so two counts run side by side on two cores;
    # with the waits stretched, sharing the machine leaves the workload as it was
    jobs = [(mode, n, r) for r in range(repeat) for mode in modes for n in sizes]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(jobs, pool.map(count, jobs), strict=True))
    per_item = {
        mode: [
            (counts[mode, large, r] - counts[mode, small, r]) / (large - small)
            for r in range(repeat)
        ]
        for mode in modes
    }
    med = {mode: statistics.median(values) for mode, values in per_item.items()}
    rate = med["plain"] / plain_cpu_us  # instructions per microsecond
    print(
        f"Instructions per item, counted by valgrind's callgrind (all threads; runs of {small} "
        f"and {large} items, 20 workers, 50 ms latency: the difference per extra item; every "
        f"wait stretched {slowdown:.0f}x, valgrind's slowdown; median and range over {repeat} "
        f"hash seeds); microseconds at the plain run's rate of {rate:,.0f} instructions/us\n"
    )
    print("| hooks | instructions/item | extra vs plain | extra vs cost (the store alone) |")
    print("|---|---|---|---|")
    for mode in modes:
        extra = [value - med["plain"] for value in per_item[mode]]
        alone = [value - med["cost"] for value in per_item[mode]]
        store = _spread(alone, rate) if mode.startswith("checkpoint") else ""
        print(
            f"| {mode} | {med[mode]:,.0f} ({min(per_item[mode]):,.0f}-{max(per_item[mode]):,.0f}) "
            f"| {_spread(extra, rate)} | {store} |"
        )
    driven = {
        store: [
            instructions_in_subprocess(
                __file__, {"n": n, "sync": "FULL", "store": store}, flag="--alone"
            )[0]
            for n in (1000, 3000)
        ]
        for store in (True, False)
    }
    with_store, without = ((counts[1] - counts[0]) / 2000 for counts in driven.values())
    print(
        f"\nThe hooks driven alone, counted the same way (runs of 1,000 and 3,000 items): "
        f"Checkpoint + Cost {with_store:,.0f} instructions per item, Cost alone "
        f"{without:,.0f}; the store's share {with_store - without:,.0f} "
        f"({(with_store - without) / rate:.0f} us)\n"
    )


def _spread(values: list[float], rate: float) -> str:
    middle = statistics.median(values)
    return (
        f"{middle:+,.0f} ({middle / rate:+.0f} us; {min(values) / rate:+.0f} to "
        f"{max(values) / rate:+.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="skip counting instructions under valgrind (about fifteen minutes)",
    )
    parser.add_argument(
        "--count-repeat", type=int, default=3, help="counts per mode under valgrind (median)"
    )
    parser.add_argument(
        "--resume-only", type=int, metavar="N", help="only the resume: N items, 99%% done"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--resume", help=argparse.SUPPRESS)
    parser.add_argument("--alone", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.resume:
        print(json.dumps(resume(json.loads(args.resume))))
        return
    if args.alone:
        print(json.dumps(hooks_alone(json.loads(args.alone))))
        return
    if args.resume_only:
        report_resume(args.resume_only, args.resume_only * 99 // 100)
        return
    n = 300 if args.quick else args.n
    repeat = 1 if args.quick else args.repeat
    alone = {
        sync: min(
            run_in_subprocess("alone", {"n": 5000, "sync": sync})["cpu_us_per_item"]
            for _ in range(max(repeat, 2))
        )
        for sync in ("FULL", "NORMAL")
    }
    print(
        f"Checkpoint + Cost hook work per item, alone (writer thread included): "
        f"{alone['FULL']:.0f} us CPU with synchronous=FULL, {alone['NORMAL']:.0f} us with "
        f"NORMAL (target <= 50)\n"
    )
    modes = ["plain", "noop", "cost", "checkpoint", "checkpoint-normal"]
    plain_cpu: dict[int, float] = {}
    for workers in (20, 100):
        base = {"n": n, "latency": 0.05, "workers": workers, "batch": 10}
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeat):
            for mode in modes:
                got = run_in_subprocess("measure", {**base, "mode": mode})
                prev = best.get(mode, got)
                best[mode] = {key: min(got[key], prev[key]) for key in got}
        plain = best["plain"]
        plain_cpu[workers] = plain["cpu_us_per_item"]
        demanded = workers / 0.05
        print(
            f"In a run: {n} items, 1 call each, 50 ms latency, {workers} workers "
            f"({demanded:.0f} items/s demanded), batch 10, best of {repeat}\n"
        )
        print("| hooks | wall s | CPU us/item | extra CPU us/item | extra wall |")
        print("|---|---|---|---|---|")
        for mode in modes:
            row = best[mode]
            extra_cpu = row["cpu_us_per_item"] - plain["cpu_us_per_item"]
            extra_wall = row["wall"] / plain["wall"] - 1
            print(
                f"| {mode} | {row['wall']:.2f} | {row['cpu_us_per_item']:.0f} | "
                f"{extra_cpu:+.0f} | {extra_wall:+.1%} |"
            )
        print()
    if args.instructions:
        counted_modes = [mode for mode in modes if mode != "checkpoint-normal"]
        sizes = (50, 150) if args.quick else (100, 400)
        instructions(counted_modes, sizes, plain_cpu[20], 1 if args.quick else args.count_repeat)
    total, done = (10_000, 9_900) if args.quick else (100_000, 99_000)
    report_resume(total, done)


def report_resume(total: int, done: int) -> None:
    got = run_in_subprocess("resume", {"total": total, "done": done})
    print(
        f"\nResume of a {total}-item run with {done} done: first new item after "
        f"{got['first_new_item_s']:.2f} s (target < 2 s); the run finished in {got['wall']:.2f} s; "
        f"peak RSS {got['rss_peak_mb']:.0f} MB, {got['rss_before_mb']:.0f} MB of it before the "
        f"run started (the dataset in memory, the state written)"
    )


if __name__ == "__main__":
    main()
