"""Full batches or low latency: what capping the batches out at once does to a list engine.

The demo's set-up (the two-call review digest over the bundled reviews, the list-taking
simulator at 50 ms per batch, 64 workers, batches of 16) at several ``max_inflight_batches``.
With no cap a batch goes as soon as no further call can join it soon; with a cap, calls
gather while the engine is busy and batches fill. Fewer, fuller batches are what an engine
that serves only so many batches at once (a model on a GPU) or bills per request needs.

``ideal items/s`` is the bound the engine and the workers set: ``min(cap x batch,
workers) / (calls per item x latency)``; ``efficiency`` is measured / ideal. One run per
row, in one process, in turn: compare rows of one run, not runs.

The second table has an engine that serves only ``--capacity`` batches at once (more wait
at the engine), run with no cap given: once as if it did not declare it, so the run sends
batches as they come and they queue there, once declaring it (``max_concurrent_batches``),
so the run caps itself; then two runs at once on one engine that declares it, as two
jobs of a service, sharing its slots.
"""

from __future__ import annotations

import argparse
import threading
import time

from symbatcher import BatchScheduler, RunStats
from symbatcher.demo import ReviewDigest, demo_reviews
from symbatcher.testing import SimulatedBatchEngine, use_engine

CALLS_PER_ITEM = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="items (bundled reviews, cycled)")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per batch")
    parser.add_argument("--caps", default="none,8,4,2,1", help="max_inflight_batches values")
    parser.add_argument(
        "--lingers", default="0.005", help="linger values, seconds (0.005 is the default)"
    )
    parser.add_argument(
        "--capacity", type=int, default=4, help="batches the engine of the second table serves"
    )
    args = parser.parse_args()
    reviews = list(demo_reviews())
    items = [reviews[i % len(reviews)] for i in range(args.n)]
    caps = [None if c == "none" else int(c) for c in args.caps.split(",")]
    lingers = [float(x) for x in args.lingers.split(",")]
    print(
        f"{args.n} items x {CALLS_PER_ITEM} calls, {args.workers} workers, batches of "
        f"{args.batch_size}, {args.latency * 1000:.0f} ms per batch"
    )
    print(
        "| max_inflight_batches | linger ms | items/s | ideal items/s | efficiency | vs no cap "
        "| batches | mean batch fill | requests per item | CPU us/call |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    uncapped: float | None = None
    for cap, linger in [(cap, linger) for cap in caps for linger in lingers]:
        if cap is None and linger != lingers[0]:
            continue  # uncapped, a call lingers a share of the latency, under a ms here
        engine = SimulatedBatchEngine(latency=args.latency, record_calls=False)
        stats, cpu = _run(engine, items, args, cap, linger)
        rate = stats.items_per_second
        uncapped = rate if uncapped is None else uncapped
        served = args.workers if cap is None else min(cap * args.batch_size, args.workers)
        ideal = served / (CALLS_PER_ITEM * args.latency)
        print(
            f"| {cap or 'none'} | {linger * 1000:g} | {rate:.0f} | {ideal:.0f} "
            f"| {rate / ideal:.2f} | {rate / uncapped:.2f} | {stats.batches} "
            f"| {stats.mean_batch_fill:.2f} "
            f"| {stats.batches / stats.items:.2f} | {cpu / stats.engine_calls * 1e6:.0f} |"
        )
    print()
    print(f"An engine that serves {args.capacity} batches at once; no max_inflight_batches given")
    print(
        "| engine declares it | items/s | ideal items/s | efficiency | batches "
        "| mean batch fill | most batches sent at once |"
    )
    print("|---|---|---|---|---|---|---|")
    served = min(args.capacity * args.batch_size, args.workers)
    ideal = served / (CALLS_PER_ITEM * args.latency)
    for declares in (False, True):
        engine = SimulatedBatchEngine(
            latency=args.latency, record_calls=False, capacity=args.capacity
        )
        if not declares:
            engine.max_concurrent_batches = None  # serves as many, says nothing
        stats, _ = _run(engine, items, args, None, lingers[0])
        rate = stats.items_per_second
        print(
            f"| {'yes' if declares else 'no'} | {rate:.0f} | {ideal:.0f} | {rate / ideal:.2f} "
            f"| {stats.batches} | {stats.mean_batch_fill:.2f} | {engine.max_concurrency} |"
        )
    # Two runs at once, half the items and half the workers each (two jobs of a service):
    # the engine's slots are shared, so together they still send no more than it serves.
    engine = SimulatedBatchEngine(latency=args.latency, record_calls=False, capacity=args.capacity)
    halves = [items[: len(items) // 2], items[len(items) // 2 :]]
    half = argparse.Namespace(**{**vars(args), "workers": args.workers // 2})
    figures: list[RunStats] = []

    def one_run(part: list[str]) -> None:
        figures.append(_schedule(part, half, None, lingers[0]))

    with use_engine(engine):
        started = time.perf_counter()
        threads = [threading.Thread(target=one_run, args=(part,)) for part in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    rate = sum(f.items for f in figures) / wall
    batches = sum(f.batches for f in figures)
    fill = sum(f.engine_calls for f in figures) / (batches * args.batch_size)
    print(
        f"| yes, 2 runs at once | {rate:.0f} | {ideal:.0f} | {rate / ideal:.2f} | {batches} "
        f"| {fill:.2f} | {engine.max_concurrency} |"
    )


def _run(
    engine: SimulatedBatchEngine,
    items: list[str],
    args: argparse.Namespace,
    cap: int | None,
    linger: float,
) -> tuple[RunStats, float]:
    with use_engine(engine):
        cpu = time.process_time()
        stats = _schedule(items, args, cap, linger)
        cpu = time.process_time() - cpu
    return stats, cpu


def _schedule(
    items: list[str], args: argparse.Namespace, cap: int | None, linger: float
) -> RunStats:
    results = BatchScheduler(max_inflight_batches=cap, linger=linger)(
        expr=ReviewDigest, dataset=items, num_workers=args.workers, batch_size=args.batch_size
    )
    return results.stats


if __name__ == "__main__":
    main()
