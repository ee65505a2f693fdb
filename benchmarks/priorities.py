"""Priorities: how fast a HIGH task starts behind a LOW backlog, and what the
per-level consumers cost a plain drain.

    python benchmarks/priorities.py latency [--backlog 50000] [--highs 300] [--rate 100]
        [--separate-producer]
    python benchmarks/priorities.py drain --old DIR [--tasks 20000] [--rounds 5]

`latency`: BACKLOG no-op LOW tasks are loaded, then a worker (defaults, in this
process) starts draining them; meanwhile HIGH no-op tasks are added one at a
time at RATE/s, from this process (as the `latency` workload of
benchmarks/run.py) or with --separate-producer from another one (as a web app
would), and each one's add -> start is `perf_counter()` at its start minus
`perf_counter()` just before its `add()` (CLOCK_MONOTONIC, the same in every
process on Linux). Reports p50 / p99 / max and how many LOW tasks were still
queued when the last HIGH one started (the backlog must not have run out).

`drain`: TASKS no-op tasks at the default priority drained by one worker
(concurrency 10, in its own process), alternating the code in DIR (e.g. an
export of the commit before priorities: `git archive <commit> | tar -x -C DIR`)
with this checkout, ROUNDS times each; tasks/s from the worker's start to the
last task's end, and the worker process's CPU time per task (steadier on a
shared machine). Without --url each part starts a nats-server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


async def urgent(number: int, added_at: float) -> None:
    """A HIGH no-op: notes its add -> start (perf_counter is the system-wide
    monotonic clock on Linux, so a producer in another process can stamp it)."""
    _latencies.append(time.perf_counter() - added_at)
    if _all_highs is not None and len(_latencies) == _expected_highs:
        _all_highs.set()


_latencies: list[float] = []
_all_highs: asyncio.Event | None = None
_expected_highs = 0


async def produce(url: str, docket_name: str, highs: int, rate: float) -> None:
    """Add HIGH tasks one at a time at `rate`/s, each stamped just before its add."""
    from docket_nats import Docket, Priority

    async with Docket(name=docket_name, url=url) as docket:
        for number in range(highs):
            await docket.add(urgent, priority=Priority.HIGH)(number, time.perf_counter())
            await asyncio.sleep(1 / rate)


async def latency(
    url: str, backlog: int, highs: int, rate: float, separate_producer: bool
) -> dict[str, float]:
    global _all_highs, _expected_highs
    from docket_nats import Docket, Priority, Worker

    lows_left = backlog
    _latencies.clear()
    _all_highs, _expected_highs = asyncio.Event(), highs
    draining = asyncio.Event()

    async def bulk() -> None:
        nonlocal lows_left
        lows_left -= 1
        if lows_left == backlog - 1000:
            draining.set()

    name = f"bench-priorities-{time.monotonic_ns()}"
    async with Docket(name=name, url=url) as docket:
        docket.register(bulk)
        docket.register(urgent)
        await docket.add_many(docket.call(bulk, priority=Priority.LOW)() for _ in range(backlog))
        async with Worker(docket, schedule_automatic_tasks=False) as worker:
            running = asyncio.create_task(worker.run_forever())
            if backlog >= 1000:  # draining at full speed first
                await asyncio.wait_for(draining.wait(), 60)
            if separate_producer:
                producer = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "produce", "--url", url, "--docket", name,
                    "--highs", str(highs), "--rate", str(rate), cwd=HERE,
                )  # fmt: skip
                await producer.wait()
            else:
                await produce(url, name, highs, rate)
            await asyncio.wait_for(_all_highs.wait(), 60)
            left_then = lows_left
            worker.stop()
            await running
    latencies = sorted(value * 1000 for value in _latencies)
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "max_ms": latencies[-1],
        "lows_left": left_then,
    }


async def drain_once(url: str, tasks: int) -> tuple[float, float]:
    from docket_nats import Docket, Worker

    done = asyncio.Event()
    remaining = tasks

    async def noop() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    async with Docket(name=f"bench-drain-{time.monotonic_ns()}", url=url) as docket:
        docket.register(noop)
        await docket.add_many([docket.call(noop)() for _ in range(tasks)])
        async with Worker(docket, concurrency=10, schedule_automatic_tasks=False) as worker:
            started, cpu = time.perf_counter(), time.process_time()
            running = asyncio.create_task(worker.run_forever())
            await done.wait()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            worker.stop()
            await running
    return tasks / elapsed, cpu / tasks


def drain_rounds(url: str, old: Path, tasks: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {"old": [], "new": []}
    cpus: dict[str, list[float]] = {"old": [], "new": []}
    for round_number in range(rounds):
        for label, code in (("old", old), ("new", HERE)):
            env = {**os.environ, "PYTHONPATH": str(code)}
            output = subprocess.run(
                [sys.executable, __file__, "drain-once", "--url", url, "--tasks", str(tasks)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd=code,
            ).stdout
            result = json.loads(output.strip().splitlines()[-1])
            assert Path(result["code"]).resolve().is_relative_to(code.resolve()), result
            rates[label].append(result["rate"])
            cpus[label].append(result["cpu"] * 1e6)
            print(
                f"round {round_number + 1} {label}: {result['rate']:8.0f} tasks/s "
                f"{result['cpu'] * 1e6:6.1f} µs CPU/task (worker process)",
                flush=True,
            )
    for label, values in rates.items():
        print(
            f"{label}: median {statistics.median(values):8.0f} tasks/s  best {max(values):8.0f}  "
            f"all {[round(v) for v in values]};  CPU/task median "
            f"{statistics.median(cpus[label]):.1f} µs, least {min(cpus[label]):.1f} µs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["latency", "drain", "drain-once", "produce"])
    parser.add_argument("--docket", default=None)
    parser.add_argument(
        "--separate-producer", action="store_true", help="add the HIGH tasks from another process"
    )
    parser.add_argument("--url", default=None)
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--highs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", type=Path, default=None)
    options = parser.parse_args()
    if options.mode == "produce":
        asyncio.run(produce(options.url, options.docket, options.highs, options.rate))
        return
    if options.mode == "drain-once":
        import docket_nats

        rate, cpu = asyncio.run(drain_once(options.url, options.tasks))
        code = str(Path(docket_nats.__file__).parent.parent)
        print(json.dumps({"rate": rate, "cpu": cpu, "code": code}))
        return
    from docket_nats._embedded import ServerProcess, free_port

    with tempfile.TemporaryDirectory() as directory:
        server = None
        url = options.url
        if url is None:
            server = ServerProcess(free_port(), Path(directory) / "nats")
            server.start()
            url = server.url
        try:
            if options.mode == "latency":
                result = asyncio.run(
                    latency(
                        url, options.backlog, options.highs, options.rate, options.separate_producer
                    )
                )
                where = "another process" if options.separate_producer else "the worker's process"
                print(
                    f"HIGH add->start (added from {where}) behind a {options.backlog} LOW backlog "
                    f"({options.highs} at {options.rate:g}/s): p50 {result['p50_ms']:.2f} ms, "
                    f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms; "
                    f"{result['lows_left']:.0f} LOW still queued after the last one"
                )
            else:
                assert options.old is not None, "drain needs --old DIR"
                drain_rounds(url, options.old, options.tasks, options.rounds)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
