"""Throughput of a concurrency-limited task against the same task unlimited.

    python -m benchmarks.flow_control [--tasks 20000] [--rounds 3] [--contended]

Each variant gets a fresh docket on one nats-server (started here, 127.0.0.1),
`--workers` worker processes (this module is also their script) with
`--concurrency` run slots each, then `--tasks` runs of a task that sleeps
`--seconds`, spread round-robin over the argument values. Timed from the first
add to the last completion the parent hears of (each run publishes a core NATS
notice at its end), adds pipelined in batches.

Variants:
- `unlimited`: no dependency;
- `limit 10 x 100 keys`: `ConcurrencyLimit("key", max_concurrent=10)`, 100 values
  (the issue's target: >= 50% of unlimited);
- `limit 2 x 10 keys`: 20 slots in all for 100 run slots: the limit binds, runs wait
  (rescheduled), so this one measures waiting, not overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from docket_nats import ConcurrencyLimit, CurrentDocket, Docket, Worker
from docket_nats._embedded import ServerProcess, free_port

READY = "READY"


def done_subject(docket: Docket) -> str:
    return f"bench.{docket.name}.done"


async def unlimited(key: int, seconds: float, docket: Docket = CurrentDocket()) -> None:
    await asyncio.sleep(seconds)
    await docket.connection.nc.publish(done_subject(docket), b"")


async def limited_10(
    key: int,
    seconds: float,
    limit: ConcurrencyLimit = ConcurrencyLimit("key", max_concurrent=10),
    docket: Docket = CurrentDocket(),
) -> None:
    await asyncio.sleep(seconds)
    await docket.connection.nc.publish(done_subject(docket), b"")


async def limited_2(
    key: int,
    seconds: float,
    limit: ConcurrencyLimit = ConcurrencyLimit("key", max_concurrent=2),
    docket: Docket = CurrentDocket(),
) -> None:
    await asyncio.sleep(seconds)
    await docket.connection.nc.publish(done_subject(docket), b"")


TASKS = [unlimited, limited_10, limited_2]
VARIANTS = [("unlimited", unlimited, 100), ("limit 10 x 100 keys", limited_10, 100)]
CONTENDED = ("limit 2 x 10 keys", limited_2, 10)


async def measure(
    url: str, function: Any, keys: int, arguments: argparse.Namespace
) -> tuple[float, int]:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    async with Docket(name=name, url=url) as docket:
        for each in TASKS:
            docket.register(each)
        done = 0
        finished = asyncio.Event()

        async def on_done(message: Msg) -> None:
            nonlocal done
            done += 1
            if done >= arguments.tasks:
                finished.set()

        await docket.connection.nc.subscribe(done_subject(docket), cb=on_done)  # pyright: ignore[reportUnknownMemberType]
        workers = [await spawn(url, name, arguments.concurrency) for _ in range(arguments.workers)]
        try:
            started = time.perf_counter()
            for first in range(0, arguments.tasks, 500):
                batch = range(first, min(first + 500, arguments.tasks))
                await asyncio.gather(
                    *(docket.add(function)(i % keys, arguments.seconds) for i in batch)
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(arguments.deadline):
                    await finished.wait()
            elapsed = time.perf_counter() - started
        finally:
            for process in workers:
                process.send_signal(signal.SIGTERM)
            for process in workers:
                try:
                    async with asyncio.timeout(10):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
        return elapsed, done


async def spawn(url: str, docket: str, concurrency: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.flow_control",
        "worker",
        "--url",
        url,
        "--docket",
        docket,
        "--concurrency",
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while (line := await process.stdout.readline()) and line.strip() != READY.encode():
            pass
    return process


async def bench(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = ServerProcess(free_port(), Path(directory))
        server.start()
        try:
            variants = [*VARIANTS, CONTENDED] if arguments.contended else VARIANTS
            # Rounds alternate the variants, so a noisy neighbour hits them alike;
            # the table shows each variant's median round.
            rates: dict[str, list[float]] = {label: [] for label, _, _ in variants}
            for round_number in range(arguments.rounds):
                for label, function, keys in variants:
                    elapsed, done = await measure(server.url, function, keys, arguments)
                    rates[label].append(done / elapsed)
                    print(
                        json.dumps(
                            {
                                "round": round_number,
                                "variant": label,
                                "completed": done,
                                "seconds": round(elapsed, 3),
                                "per_second": round(done / elapsed),
                            }
                        ),
                        flush=True,
                    )
            base = statistics.median(rates["unlimited"])
            print(
                f"\n{arguments.tasks} runs per round, {arguments.rounds} rounds, "
                f"{arguments.workers} worker processes x {arguments.concurrency}"
            )
            print("| variant | median runs/s | min-max runs/s | median vs unlimited |")
            print("|---|---:|---:|---:|")
            for label, values in rates.items():
                median = statistics.median(values)
                print(
                    f"| {label} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f} | "
                    f"{median / base:.0%} |"
                )
        finally:
            server.stop()


async def serve(arguments: argparse.Namespace) -> None:
    async with Docket(name=arguments.docket, url=arguments.url) as docket:
        for each in TASKS:
            docket.register(each)
        async with Worker(
            docket,
            concurrency=arguments.concurrency,
            redelivery_timeout=timedelta(seconds=30),
            schedule_automatic_tasks=False,
        ) as worker:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            running = asyncio.create_task(worker.run_forever())
            await asyncio.sleep(0)
            print(READY, flush=True)
            await running


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker")
    worker.add_argument("--url", required=True)
    worker.add_argument("--docket", required=True)
    worker.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=0.005)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--contended", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    if arguments.command == "worker":
        asyncio.run(serve(arguments))
    else:
        asyncio.run(bench(arguments))


if __name__ == "__main__":
    main()
