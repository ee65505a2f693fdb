"""What per-run logging costs: drain throughput with INFO logging on vs. off.

    python benchmarks/logging_overhead.py [--tasks 20000] [--rounds 3]
        [--concurrency 10] [--url nats://...]

Each round drains the same number of no-op tasks (one `Logged` argument, one
not) three ways, interleaved so that drift of the machine hits all alike:
`off` (root at WARNING: the worker's lines are not even built), `plain` and
`json` (root at INFO, `docket_nats._log_setup.configure` writing to a file, two
lines per run). Reports the best tasks/s of each, its cost against `off`, and
the least CPU time per task of this process (worker and waiting benchmark),
which is the steadier figure on a shared machine, with the cost it implies
(1 - CPU off / CPU on).
Without --url it starts a nats-server of its own (file storage, 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Annotated

from docket_nats import Docket, Logged, Worker
from docket_nats._embedded import ServerProcess, free_port
from docket_nats._log_setup import configure


async def drain(url: str, tasks: int, concurrency: int, label: str) -> tuple[float, float]:
    """Tasks/s from worker start until the last task has run (an event, no polling),
    and this process's CPU time per task meanwhile (steadier on a shared machine)."""
    done = asyncio.Event()
    remaining = tasks

    async def noop(order: Annotated[str, Logged], card: str) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    async with Docket(name=f"bench-logging-{label}-{time.monotonic_ns()}", url=url) as docket:
        docket.register(noop)
        await docket.add_many([docket.call(noop)(f"order-{i}", "secret") for i in range(tasks)])
        async with Worker(docket, concurrency=concurrency) as worker:
            started, cpu = time.perf_counter(), time.process_time()
            running = asyncio.create_task(worker.run_forever())
            await done.wait()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            worker.stop()
            await running
            return tasks / elapsed, cpu / tasks


async def measure(url: str, tasks: int, rounds: int, concurrency: int, log_dir: Path) -> None:
    best: dict[str, float] = {}
    least_cpu: dict[str, float] = {}
    for round_number in range(rounds):
        for label in ("off", "plain", "json"):
            if label == "off":
                configure("plain", "WARNING", stream=(log_dir / "off.log").open("a"))
            else:
                configure(label, "INFO", stream=(log_dir / f"{label}.log").open("a"))  # type: ignore[arg-type]
            rate, cpu = await drain(url, tasks, concurrency, label)
            best[label] = max(best.get(label, 0.0), rate)
            least_cpu[label] = min(least_cpu.get(label, 1.0), cpu)
            print(
                f"round {round_number + 1} {label:>5}: {rate:8.0f} tasks/s "
                f"{cpu * 1e6:6.1f} µs CPU/task",
                flush=True,
            )
    logging.getLogger().setLevel(logging.WARNING)
    lines = sum(1 for _ in (log_dir / "plain.log").open())
    print(
        f"\nbest of {rounds}, {tasks} tasks, concurrency {concurrency} "
        f"({lines} plain lines written)"
    )
    for label, rate in best.items():
        cost = 1 - rate / best["off"]
        extra = (least_cpu[label] - least_cpu["off"]) * 1e6
        # What the extra CPU would cost a CPU-bound worker: steadier than the
        # best rates when the machine is shared.
        cpu_cost = 1 - least_cpu["off"] / least_cpu[label]
        print(
            f"  {label:>5}: {rate:8.0f} tasks/s   cost {cost:6.1%}   "
            f"{least_cpu[label] * 1e6:6.1f} µs CPU/task (+{extra:.1f}, {cpu_cost:.1%} by CPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url", default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = None
        url = options.url
        if url is None:
            server = ServerProcess(free_port(), Path(directory) / "nats")
            server.start()
            url = server.url
        try:
            asyncio.run(
                measure(url, options.tasks, options.rounds, options.concurrency, Path(directory))
            )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
