"""Strikes: how fast a strike reaches the workers, and what rules cost add().

    python -m benchmarks.strikes [--cycles 200] [--rounds 20] [--url nats://...]

Propagation: 4 worker processes (a Docket and a running Worker each) listen to
their strike list; whenever it changes they evaluate `is_struck` on a probe
call of the task (the check the worker makes before running a body) and
report the moment it flips over core NATS. The parent strikes, takes the time
when `strike()` returns, and waits for all 4 to refuse; then restores and
waits for all 4 to accept again. Latency = report time - return time (one
host, one clock; a negative value means the worker had it before the striker's
ack arrived).

add() cost: sequential `add()` and pipelined `add_many()` rates, and the
nanoseconds of one `is_struck` check, with no rules and with 1,000 rules
(500 "customer_id == blocked-N" for every task, 400 whole-task rules on other
tasks, 90 equality and 10 range/compound rules on the task being added; none
matches the added calls, so every add is checked against all that apply).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from docket_nats import Docket, Execution, Worker
from docket_nats._embedded import ServerProcess, free_port

WORKERS = 4


async def process_order(customer_id: str, amount: int) -> None:
    return None


def probe_call(docket: Docket, customer_id: str) -> Execution:
    return Execution(
        docket, process_order, (customer_id, 5), {}, "probe", datetime.now(UTC), 1, "process_order"
    )


# -- the worker side -----------------------------------------------------------------


async def serve(url: str, name: str) -> None:
    async with Docket(name=name, url=url) as docket:
        docket.register(process_order)
        async with Worker(docket, schedule_automatic_tasks=False) as worker:
            running = asyncio.create_task(worker.run_forever())
            nc = docket.connection.nc
            probe = probe_call(docket, "blocked")
            state = {"struck": docket.strike_list.is_struck(probe)}
            in_flight: set[asyncio.Future[None]] = set()

            def changed() -> None:
                struck = docket.strike_list.is_struck(probe)
                if struck != state["struck"]:
                    state["struck"] = struck
                    report = {"pid": os.getpid(), "struck": struck, "at": time.time()}
                    sending = asyncio.ensure_future(
                        nc.publish(f"bench.{name}", json.dumps(report).encode())
                    )
                    in_flight.add(sending)
                    sending.add_done_callback(in_flight.discard)

            docket.strike_list.on_change(changed)
            stop = asyncio.Event()

            async def on_stop(_: Msg) -> None:
                stop.set()

            await nc.subscribe(f"bench.{name}.stop", cb=on_stop)  # pyright: ignore[reportUnknownMemberType]
            await nc.flush()
            print("ready", flush=True)
            await stop.wait()
            worker.stop()
            await running


# -- the measuring side ----------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | {percentile(ms, 0.99):.2f} "
        f"| {max(ms):.2f} |"
    )


async def propagation(url: str, cycles: int) -> list[str]:
    name = f"bench-strikes-{uuid.uuid4().hex[:8]}"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.strikes",
            "serve",
            "--url",
            url,
            "--docket",
            name,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(WORKERS)
    ]
    for process in processes:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"ready", line
    reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    strike_latency: list[float] = []
    restore_latency: list[float] = []
    async with Docket(name=name, url=url) as docket:

        async def on_report(message: Msg) -> None:
            reports.put_nowait(json.loads(message.data))

        await docket.connection.nc.subscribe(f"bench.{name}", cb=on_report)  # pyright: ignore[reportUnknownMemberType]
        for _ in range(cycles):
            for direction, latencies in (("strike", strike_latency), ("restore", restore_latency)):
                method = docket.strike if direction == "strike" else docket.restore
                await method(process_order, "customer_id", "==", "blocked")
                returned = time.time()
                seen: set[int] = set()
                while len(seen) < WORKERS:
                    report = await asyncio.wait_for(reports.get(), 10)
                    assert report["struck"] == (direction == "strike"), report
                    seen.add(report["pid"])
                    latencies.append(report["at"] - returned)
        await docket.connection.nc.publish(f"bench.{name}.stop", b"")
        await docket.connection.nc.flush()
    for process in processes:
        await asyncio.wait_for(process.wait(), 30)
    return [
        f"Strike propagation to {WORKERS} worker processes ({cycles} strike/restore cycles; "
        "ms from the call returning to each worker's check flipping):",
        "",
        "| change | samples | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        summary("strike → refused", strike_latency),
        summary("restore → accepted", restore_latency),
    ]


async def install_rules(docket: Docket) -> None:
    writes: list[Any] = []
    for n in range(500):
        writes.append(docket.strike(None, "customer_id", "==", f"blocked-{n}"))
    for n in range(400):
        writes.append(docket.strike(f"other_task_{n}"))
    for n in range(90):
        writes.append(docket.strike(process_order, "customer_id", "==", f"vip-{n}"))
    for n in range(5):
        writes.append(docket.strike(process_order, "amount", ">", 10**9 + n))
    for n in range(5):
        writes.append(docket.strike(process_order, customer_id=f"c{n}", amount=("<", -n)))
    await asyncio.gather(*writes)
    assert len(docket.strike_list.rules()) == 1000


async def sequential_rate(docket: Docket, adds: int) -> float:
    await docket.connection.js.purge_stream(docket.names.stream)
    add = docket.add(process_order)
    started = time.perf_counter()
    for n in range(adds):
        await add(f"customer-{n}", n)
    return adds / (time.perf_counter() - started)


async def batch_rate(docket: Docket, adds: int) -> float:
    await docket.connection.js.purge_stream(docket.names.stream)
    calls = [docket.call(process_order)(f"customer-{n}", n) for n in range(adds)]
    started = time.perf_counter()
    await docket.add_many(calls)
    return adds / (time.perf_counter() - started)


def check_cost(docket: Docket, checks: int = 100_000) -> float:
    """Nanoseconds per is_struck of a call that no rule strikes."""
    probe = probe_call(docket, "customer-1")
    started = time.perf_counter()
    for _ in range(checks):
        docket.strike_list.is_struck(probe)
    return (time.perf_counter() - started) / checks * 1e9


async def add_cost(url: str, rounds: int, sequential: int, batch: int) -> list[str]:
    """Short chunks, alternating (and swapping which goes first) between a docket
    without rules and one with 1,000, so that load from elsewhere on the machine
    falls on both alike; medians of the chunks."""
    rates: dict[str, dict[str, list[float]]] = {
        label: {"sequential": [], "batch": [], "check": []} for label in ("none", "1,000")
    }
    async with Docket(name=f"bench-strike-adds-{uuid.uuid4().hex[:8]}", url=url) as bare:
        async with Docket(name=f"bench-strike-adds-{uuid.uuid4().hex[:8]}", url=url) as ruled:
            await install_rules(ruled)
            pair = [("none", bare), ("1,000", ruled)]
            for round_number in range(rounds):
                for label, docket in pair if round_number % 2 else reversed(pair):
                    rates[label]["sequential"].append(await sequential_rate(docket, sequential))
                    rates[label]["batch"].append(await batch_rate(docket, batch))
                    rates[label]["check"].append(check_cost(docket))
            await bare.connection.js.purge_stream(bare.names.stream)
            await ruled.connection.js.purge_stream(ruled.names.stream)
    median = {
        label: {kind: statistics.median(values) for kind, values in kinds.items()}
        for label, kinds in rates.items()
    }
    none, ruled_ = median["none"], median["1,000"]
    lines = [
        f"add() with no strike rules and with 1,000 (medians of {rounds} alternating chunks "
        f"of {sequential} sequential add() and {batch} pipelined in add_many):",
        "",
        "| rules | sequential add/s | add_many add/s | is_struck ns (no match) |",
        "|---|---|---|---|",
    ]
    for label, row in median.items():
        lines.append(
            f"| {label} | {row['sequential']:,.0f} | {row['batch']:,.0f} | {row['check']:,.0f} |"
        )
    extra = (ruled_["check"] - none["check"]) / 1e9
    lines += [
        "",
        f"1,000 rules vs none: sequential {ruled_['sequential'] / none['sequential'] - 1:+.1%}, "
        f"add_many {ruled_['batch'] / none['batch'] - 1:+.1%} (measured); the extra check "
        f"time is {extra * none['sequential']:.1%} of a sequential add and "
        f"{extra * none['batch']:.1%} of a pipelined one (computed).",
    ]
    return lines


async def measure(arguments: argparse.Namespace) -> None:
    server: ServerProcess | None = None
    url = arguments.url
    if url is None:
        server = ServerProcess(free_port(), Path(tempfile.mkdtemp(prefix="bench-strikes-")))
        server.start()
        url = server.url
    try:
        lines = await propagation(url, arguments.cycles)
        lines += [""] + await add_cost(url, arguments.rounds, arguments.sequential, arguments.batch)
    finally:
        if server is not None:
            server.stop()
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serving = commands.add_parser("serve", help="(internal) one worker process")
    serving.add_argument("--url", required=True)
    serving.add_argument("--docket", required=True)
    parser.add_argument("--url", default=None, help="a NATS server (default: start one)")
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20, help="add() chunks per docket")
    parser.add_argument("--sequential", type=int, default=300, help="add() calls per chunk")
    parser.add_argument("--batch", type=int, default=2000, help="add_many size per chunk")
    arguments = parser.parse_args()
    if arguments.command == "serve":
        asyncio.run(serve(arguments.url, arguments.docket))
    else:
        asyncio.run(measure(arguments))


if __name__ == "__main__":
    main()
