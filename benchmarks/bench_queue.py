"""What a big job costs the service's queue: submitting it, looking at it, streaming it.

A job of ``--n`` items (default 1,000,000 short strings) is submitted from a generator
(what ``POST /jobs`` with a ``path`` does), then looked at as the API does (``get``: every
``GET /jobs/{id}`` and every progress event, twice a second per watcher; ``list``), then
its items are streamed as a worker reads them. Each phase prints its time; the child
process's peak RSS is printed at the end. ``--legacy`` also times one look at the same
job as 0.7.1 stored it (its items inside the settings, parsed by every look).

    python benchmarks/bench_queue.py              # about ten seconds
    python benchmarks/bench_queue.py --n 100000 --legacy
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path


def _items(n: int) -> Iterator[str]:
    return (
        f"review {i}: a line of text about as long as a short review's first words"
        for i in range(n)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--looks", type=int, default=100, help="gets timed (default 100)")
    parser.add_argument("--legacy", action="store_true", help="also time 0.7.1's look")
    args = parser.parse_args()

    from symbatcher.queue.jobs import JobQueue

    with tempfile.TemporaryDirectory() as folder:
        queue = JobQueue(Path(folder) / "jobs.sqlite")
        start = time.perf_counter()
        job = queue.submit("summarize", {"workers": 64}, items=_items(args.n))
        submit = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.looks):
            queue.get(job.id)
        look = (time.perf_counter() - start) / args.looks
        start = time.perf_counter()
        queue.list()
        listing = time.perf_counter() - start
        start = time.perf_counter()
        streamed = sum(1 for _ in queue.items(job.id))
        stream = time.perf_counter() - start
        size = (Path(folder) / "jobs.sqlite").stat().st_size
        print(f"{args.n:,} items; queue file {size / 2**20:.0f} MB")
        print(f"submit from a generator: {submit:.2f} s ({submit / args.n * 1e6:.2f} us per item)")
        print(f"a look at the job (get): {look * 1e6:.0f} us; list: {listing * 1e6:.0f} us")
        print(f"stream its items as a worker does: {stream:.2f} s ({streamed:,} items)")
        queue.close()
        if args.legacy:
            settings = json.dumps({"workers": 64, "items": list(_items(args.n))})
            with closing(sqlite3.connect(Path(folder) / "legacy.sqlite")) as db:
                db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, settings TEXT)")
                db.execute("INSERT INTO jobs VALUES ('a', ?)", (settings,))
                db.commit()
                del settings
                start = time.perf_counter()
                (text,) = db.execute("SELECT settings FROM jobs WHERE id = 'a'").fetchone()
                json.loads(text)
                legacy = time.perf_counter() - start
                print(f"0.7.1's look (items in the settings): {legacy * 1e6:.0f} us")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB" + (" (the legacy look's list included)" if args.legacy else ""))


if __name__ == "__main__":
    main()
