"""``symbatcher demo``: the bundled two-call example over the bundled reviews, on a
simulated engine unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

from symbatcher.cli.engine import run_engine
from symbatcher.cli.options import (
    check_engine_options,
    engine_of,
    engine_options,
    non_negative,
    positive,
    seconds,
)
from symbatcher.dispatch import DEFAULT_LINGER

SIMULATOR_NOTE = (
    "engine: simulated (symbatcher.testing, {kind}; {latency:g}s {per}{serves}, answers echo "
    "the prompt; no network, no key). Run against a hosted model with --model PROVIDER:MODEL "
    "(its key in the provider's variable, e.g. DEEPSEEK_API_KEY), your configured provider "
    "with --engine symai, or a self-hosted vLLM or llama.cpp server with --engine-url URL."
)


def add_parser(commands: Any) -> None:
    """``symbatcher demo``."""
    demo = commands.add_parser(
        "demo",
        help="run the bundled two-call review digest over ~1,000 bundled reviews",
        description=(
            "Runs symbatcher.demo.ReviewDigest (two nested LLM calls per item) over the "
            "bundled reviews. By default on a simulated engine: no key, no network."
        ),
    )
    demo.add_argument(
        "--engine",
        choices=("simulated", "simulated-plain", "symai"),
        default="simulated",
        help="simulated: a list-taking simulator (latency per batch); simulated-plain: a "
        "plain one (latency per call); symai: the engine your symai.config.json configures",
    )
    engine_options(
        demo,
        "instead: a self-hosted OpenAI-compatible server (vLLM, llama.cpp), with "
        "symai's own engine for it, e.g. http://127.0.0.1:8000",
    )
    demo.add_argument("--items", type=positive, default=None, help="only the first N reviews")
    demo.add_argument("--workers", type=positive, default=64)
    demo.add_argument("--batch-size", type=positive, default=16)
    demo.add_argument(
        "--max-inflight-batches",
        type=positive,
        default=None,
        help="batches out at the engine at once (default: what the engine declares it "
        "serves at once, else no cap); a cap makes batches fill",
    )
    demo.add_argument(
        "--capacity",
        type=non_negative,
        default=4,
        help="batches the simulated list-taking engine serves at once, as a model on a GPU "
        "does; it declares it, and the run sends no more (default 4; 0: any number)",
    )
    demo.add_argument(
        "--linger",
        type=seconds,
        default=DEFAULT_LINGER,
        help=f"seconds a call may wait for its batch to fill (default {DEFAULT_LINGER})",
    )
    demo.add_argument(
        "--latency", type=seconds, default=0.05, help="simulated latency in seconds (default 0.05)"
    )
    demo.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress line on stderr (auto: when stderr is a terminal)",
    )
    demo.add_argument("--show", type=int, default=2, help="print the first N results")


def demo_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from symbatcher import BatchScheduler, ItemError
    from symbatcher.demo import ReviewDigest, demo_reviews, demo_size
    from symbatcher.testing import SimulatedBatchEngine, SimulatedEngine, use_engine

    check_engine_options(args)
    total = min(args.items, demo_size()) if args.items else demo_size()
    with ExitStack() as stack:
        if args.engine_url or args.model:
            stack.enter_context(run_engine(engine_of(args)))
            print(
                f"engine: symai's {args.engine_kind} engine at {args.engine_url}"
                if args.engine_url
                else f"engine: symai's engine for {args.model}",
                file=sys.stderr,
            )
        elif args.engine == "symai":
            print("engine: symai's configured 'neurosymbolic' engine", file=sys.stderr)
        else:
            plain = args.engine == "simulated-plain"
            capacity = None if plain or not args.capacity else args.capacity
            engine: Any = (
                SimulatedEngine(latency=args.latency, record_calls=False)
                if plain
                else SimulatedBatchEngine(
                    latency=args.latency, record_calls=False, capacity=capacity
                )
            )
            stack.enter_context(use_engine(engine))
            print(
                SIMULATOR_NOTE.format(
                    kind="plain" if plain else "list-taking",
                    latency=args.latency,
                    per="per call" if plain else "per batch",
                    serves=f", {capacity} batches at once" if capacity else "",
                ),
                file=sys.stderr,
            )
        show_bar = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
        bar = (
            stack.enter_context(tqdm(total=total, file=sys.stderr, unit="item", desc="demo"))
            if show_bar
            else None
        )
        stream = stack.enter_context(
            BatchScheduler(max_inflight_batches=args.max_inflight_batches, linger=args.linger).imap(
                expr=ReviewDigest,
                dataset=demo_reviews(total),
                num_workers=args.workers,
                batch_size=args.batch_size,
            )
        )
        outcomes: dict[int, Any] = {}
        for index, outcome in stream:
            outcomes[index] = outcome
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=stream.stats.failed, refresh=False)
        stats = stream.stats
    for index in range(min(args.show, len(outcomes))):
        text = " ".join(str(outcomes[index]).split())
        print(f"[{index}] {text[:160]}{'...' if len(text) > 160 else ''}")
    print(
        f"done: {stats.items} items ({stats.succeeded} ok, {stats.failed} failed) in "
        f"{stats.wall_time:.2f}s = {stats.items_per_second:.1f} items/s; "
        f"{stats.calls_line()}"
    )
    for error in [o for o in outcomes.values() if isinstance(o, ItemError)][:3]:
        print(f"  {error}", file=sys.stderr)
    return 0 if stats.failed == 0 else 1
