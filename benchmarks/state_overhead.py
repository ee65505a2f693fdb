"""What recording execution state and results costs: drain throughput with the
state recorder on vs. off.

    python benchmarks/state_overhead.py [--tasks 10000] [--rounds 5]
        [--concurrency 10] [--url nats://...]

Each round drains the same number of tasks that return an int, `off`
(`StateRecorder.enabled = False`: no state or result writes; metrics are
counted either way) and `on` (docket-nats's default), interleaved so that drift
of the machine hits both alike. Reports the median tasks/s of each and the
median CPU time per task of this process (worker and waiting benchmark), the
steadier figure on a shared machine. Without --url it starts a nats-server of
its own (file storage, 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from docket_nats import Docket, Worker
from docket_nats._embedded import ServerProcess, free_port
from docket_nats.worker._recorder import StateRecorder


async def doubled(n: int) -> int:
    return n * 2


async def drain(url: str, tasks: int, concurrency: int, record: bool) -> tuple[float, float]:
    """Tasks/s of one drain, and this process's CPU microseconds per task."""
    StateRecorder.enabled = record
    async with Docket(name=f"bench-state-{uuid.uuid4().hex[:8]}", url=url) as docket:
        await docket.add_many(docket.call(doubled)(n) for n in range(tasks))
        async with Worker(
            docket, concurrency=concurrency, minimum_check_interval=timedelta(milliseconds=5)
        ) as worker:
            started, cpu = time.perf_counter(), time.process_time()
            await worker.run_until_finished()
            elapsed = time.perf_counter() - started
            return tasks / elapsed, (time.process_time() - cpu) / tasks * 1e6


async def main(arguments: argparse.Namespace) -> None:
    server = None
    url = arguments.url
    if url is None:
        server = ServerProcess(free_port(), Path(tempfile.mkdtemp(prefix="bench-state-")))
        server.start()
        url = server.url
    try:
        rates: dict[bool, list[float]] = {False: [], True: []}
        cpus: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(arguments.rounds):
            for record in (False, True):
                rate, cpu = await drain(url, arguments.tasks, arguments.concurrency, record)
                rates[record].append(rate)
                cpus[record].append(cpu)
    finally:
        StateRecorder.enabled = True
        if server is not None:
            server.stop()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    runs = {record: [round(rate) for rate in rates[record]] for record in (False, True)}
    print(
        f"{arguments.tasks} tasks x {arguments.rounds} rounds, concurrency {arguments.concurrency}"
    )
    print(f"off: {off:,.0f} tasks/s, {cpu_off:.1f} us CPU/task (runs: {runs[False]})")
    print(f"on:  {on:,.0f} tasks/s, {cpu_on:.1f} us CPU/task (runs: {runs[True]})")
    throughput_cost = 100 * (off - on) / off
    cpu_cost = 100 * (cpu_on - cpu_off) / cpu_off
    print(f"overhead: throughput {throughput_cost:.1f}%, CPU {cpu_cost:.1f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url", default=None)
    asyncio.run(main(parser.parse_args()))
