"""What more processes over one queue folder buy (``symbatcher worker``).

``--jobs`` jobs of ``--items`` items each (one engine call per item, a simulated engine of
``--latency`` seconds per call, 16 workers and batches of 8 per job) are run by
``symbatcher worker`` processes over one queue folder: one process running two jobs at a
time, then two processes running one each (the same jobs at once, in two interpreters),
then as many processes as ``--processes`` says. Timed from the moment every process looks
at the queue until every job has ended; each configuration runs ``--repeat`` times,
alternately, and keeps the best. At zero latency a run is bound by symai's CPU per query,
which one interpreter runs one thread at a time.

    python benchmarks/bench_processes.py                  # about a minute
    python benchmarks/bench_processes.py --latency 0.05 --items 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

READY = "symbatcher worker:"


def child(folder: str, latency: float, workers: int) -> int:
    """A worker process: ``echo`` registered, the simulated engine bound."""
    from symai import Expression, Symbol

    from symbatcher.cli import main
    from symbatcher.queue import register
    from symbatcher.testing import SimulatedEngine, use_engine

    @register("echo")
    class Echo(Expression):  # type: ignore[misc]
        def forward(self, input: Any, **kwargs: Any) -> Any:
            return Symbol(str(input)).query("Summarize")

    with use_engine(SimulatedEngine(latency=latency)):
        return main(["worker", "--dir", folder, "--workers", str(workers)])


def measure(processes: int, workers: int, args: argparse.Namespace) -> tuple[float, float]:
    """Wall seconds from every process ready to every job ended, and the processes' CPU
    seconds per item."""
    from symbatcher.queue import JobQueue
    from symbatcher.queue.jobs import ENDED

    with tempfile.TemporaryDirectory() as folder:
        queue = JobQueue(Path(folder) / "jobs.sqlite")
        logs = [Path(folder) / f"worker{i}.log" for i in range(processes)]
        spawned = []
        for log in logs:
            with log.open("wb") as err:
                command = [sys.executable, __file__, "--child", folder, str(args.latency)]
                spawned.append(subprocess.Popen([*command, str(workers)], stderr=err))
        try:
            while not all(READY in log.read_text() for log in logs):
                if any(p.poll() is not None for p in spawned):
                    raise SystemExit("a worker process exited at start: " + logs[0].read_text())
                threading.Event().wait(0.02)
            settings = {"workers": 16, "batch_size": 8}
            pids = [process.pid for process in spawned]
            cpu_before = _cpu(pids)  # not their start-up: imports cost seconds
            start = time.perf_counter()
            jobs = [
                queue.submit(
                    "echo", settings, items=[f"job {j} item {i}" for i in range(args.items)]
                )
                for j in range(args.jobs)
            ]
            while not all(queue.get(job.id).state in ENDED for job in jobs):
                threading.Event().wait(0.01)  # a look costs a row read: 10 ms is the error
            wall = time.perf_counter() - start
            cpu_after = _cpu(pids)
            failed = [job.id for job in jobs if queue.get(job.id).state != "succeeded"]
            if failed:
                raise SystemExit(f"jobs did not succeed: {failed}")
        finally:
            for process in spawned:
                process.terminate()
            for process in spawned:
                process.wait()
            queue.close()
    return wall, (cpu_after - cpu_before) / (args.jobs * args.items)


def _cpu(pids: list[int]) -> float:
    """CPU seconds the processes used so far (Linux: utime and stime in /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--items", type=int, default=500, help="per job")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per engine call")
    parser.add_argument("--processes", type=int, default=2, help="the largest count tried")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, latency, workers = args.child
        sys.exit(child(folder, float(latency), int(workers)))

    # (processes, workers each): two jobs at a time in one interpreter, then in two
    shapes = [(1, 2), *((count, 1) for count in range(2, args.processes + 1))]
    best: dict[tuple[int, int], tuple[float, float]] = {}
    for _ in range(args.repeat):
        for shape in shapes:
            wall, cpu = measure(*shape, args)
            old = best.get(shape)
            best[shape] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    total = args.jobs * args.items
    print(
        f"{args.jobs} jobs x {args.items} items, one call each, {args.latency * 1000:g} ms per "
        f"call; {os.cpu_count()} cores; best of {args.repeat}"
    )
    print("| processes | jobs at once | items/s | vs one process | CPU us/item |")
    print("|---|---|---|---|---|")
    base = best[shapes[0]][0]
    for (count, workers), (wall, cpu) in best.items():
        print(
            f"| {count} | {count * workers} | {total / wall:.0f} | {base / wall:.2f}x "
            f"| {cpu * 1e6:.0f} |"
        )


if __name__ == "__main__":
    main()
