"""Single node (R1) vs. 3-node cluster (R3) on loopback, in one run.

    python deploy/benchmark.py [--tasks 5000] [--latency-tasks 300]

For each setup: a fresh docket, one in-process Worker (concurrency 50).
- add: TASKS adds, 100 concurrent at a time (tasks/s);
- drain: the worker starts on the TASKS queued tasks; time until all ran (tasks/s);
- add->start: with the worker idle, LATENCY_TASKS adds one after another, 5 ms
  apart; latency = task start - add call (p50 / p99 / max, ms).
Everything on one machine, so the cluster's three servers share its cores with
the client: read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.local_cluster import Cluster, wait_for_jetstream
from docket_nats import Docket, Worker
from docket_nats._embedded import ServerProcess, free_port

started: dict[int, float] = {}
# Set when `len(started)` reaches `wanted[0]`.
wanted = [0]
reached = asyncio.Event()


async def probe(n: int) -> None:
    started[n] = time.perf_counter()
    if len(started) >= wanted[0]:
        reached.set()


async def all_started(count: int) -> None:
    wanted[0] = count
    reached.clear()
    if len(started) < count:
        await reached.wait()


async def measure(
    label: str, urls: list[str], replicas: int, tasks: int, latency_tasks: int
) -> dict[str, float]:
    started.clear()
    name = f"bench-{label}"
    async with Docket(name, url=urls, replicas=replicas) as docket:
        docket.register(probe)
        add = docket.add(probe)
        begin = time.perf_counter()
        for start in range(0, tasks, 100):
            await asyncio.gather(*(add(n) for n in range(start, min(tasks, start + 100))))
        add_rate = tasks / (time.perf_counter() - begin)

        async with Worker(
            docket,
            concurrency=50,
            minimum_check_interval=timedelta(milliseconds=20),
            shutdown_grace=timedelta(seconds=2),
        ) as worker:
            begin = time.perf_counter()
            running = asyncio.create_task(worker.run_forever())
            await all_started(tasks)
            drain_rate = tasks / (time.perf_counter() - begin)

            added_at: dict[int, float] = {}
            for n in range(tasks, tasks + latency_tasks):
                added_at[n] = time.perf_counter()
                await add(n)
                await asyncio.sleep(0.005)
            await all_started(tasks + latency_tasks)
            worker.stop()
            await running
    latencies = sorted((started[n] - added_at[n]) * 1000 for n in added_at)
    return {
        "add/s": add_rate,
        "drain/s": drain_rate,
        "p50 ms": statistics.median(latencies),
        "p99 ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max ms": latencies[-1],
    }


async def run(tasks: int, latency_tasks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="docket-bench-") as scratch:
        single = ServerProcess(free_port(), Path(scratch) / "single")
        cluster = Cluster(Path(scratch) / "cluster")
        single.start()
        cluster.start()
        try:
            await wait_for_jetstream([single.url])
            await cluster.wait_ready()
            results = {
                "single node, R1": await measure("r1", [single.url], 1, tasks, latency_tasks),
                "3-node cluster, R3": await measure("r3", cluster.urls, 3, tasks, latency_tasks),
            }
        finally:
            single.stop()
            cluster.stop()
    columns = ["add/s", "drain/s", "p50 ms", "p99 ms", "max ms"]
    print(f"{tasks} tasks (add, drain); {latency_tasks} sequential adds (add->start latency)")
    print(f"| setup | {' | '.join(columns)} |")
    print("|---|" + "---|" * len(columns))
    for label, result in results.items():
        cells = " | ".join(
            f"{result[c]:,.0f}" if c.endswith("/s") else f"{result[c]:.2f}" for c in columns
        )
        print(f"| {label} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--latency-tasks", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.tasks, arguments.latency_tasks))


if __name__ == "__main__":
    main()
