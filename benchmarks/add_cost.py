"""What one concurrent add() costs this process: rate, CPU and garbage collection.

    python -m benchmarks.add_cost [--url nats://...] [--rounds 20] [--batch 1000]
        [--profile N]

Rounds of `batch` gathered `docket.add(noop)()` (the concurrent-enqueue workload
of benchmarks/run.py) against one docket at default settings. Reports the median
and best round rate, the process CPU time per add (the nats-server runs on the
other core, so gathered adds are bound by this number) and how much of it the
cyclic garbage collector took (its collections per generation, CPU time from
gc.callbacks). With --profile N, one more pass runs under cProfile and prints the
N functions with the most own time.

Without --url it starts a nats-server of its own (the embedded configuration,
file store in a temporary directory) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from docket_nats import Docket
from docket_nats._embedded import ServerProcess, embedded_config, free_port


async def noop() -> None: ...


class GarbageClock:
    """Collections per generation and their CPU time, while installed."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.collections[info["generation"]] += 1
            self.seconds += time.thread_time() - self._started


async def rounds(docket: Docket, count: int, batch: int) -> tuple[list[float], float]:
    """Rates of `count` rounds and the process CPU seconds they took."""
    rates: list[float] = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await asyncio.gather(*(docket.add(noop)() for _ in range(batch)))
        rates.append(batch / (time.perf_counter() - started))
    return rates, time.process_time() - cpu


async def measure(url: str, arguments: argparse.Namespace) -> None:
    batch: int = arguments.batch
    async with Docket(name=f"bench-add-cost-{time.time_ns()}", url=url) as docket:
        await asyncio.gather(*(docket.add(noop)() for _ in range(100)))  # warm-up
        clock = GarbageClock()
        gc.callbacks.append(clock)
        try:
            rates, cpu = await rounds(docket, arguments.rounds, batch)
        finally:
            gc.callbacks.remove(clock)
        adds = arguments.rounds * batch
        print(
            f"{arguments.rounds} rounds of {batch:,} gathered adds: median "
            f"{statistics.median(rates):,.0f}/s, best {max(rates):,.0f}/s; "
            f"CPU {cpu / adds * 1e6:.1f} µs/add, of which garbage collection "
            f"{clock.seconds / adds * 1e6:.1f} µs (collections by generation: "
            f"{clock.collections})"
        )
        if arguments.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await rounds(docket, arguments.rounds, batch)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(arguments.profile)


async def main(arguments: argparse.Namespace) -> None:
    server: ServerProcess | None = None
    url: str | None = arguments.url
    if url is None:
        directory = Path(tempfile.mkdtemp(prefix="bench-add-cost-"))
        server = ServerProcess(free_port(), directory, config=embedded_config())
        server.start()
        url = server.url
    try:
        await measure(url, arguments)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="a NATS server (default: start one)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", type=int, default=0, help="print the top N by own time")
    asyncio.run(main(parser.parse_args()))
