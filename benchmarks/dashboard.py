"""The dashboard at scale: page render time, and what open pages cost NATS.

    python -m benchmarks.dashboard [--records 100000] [--scheduled 10000] [--seconds 10]

On a fresh nats-server (127.0.0.1, monitoring on): `--records` execution records
written to the executions bucket as workers write them (the worker's record
encoder and TTL headers; 90% completed, 8% failed, 2% cancelled, 8 task names),
and `--scheduled` tasks added for the next hour with `add_many`.

1. Server time: the app in this process (httpx on its ASGI interface, so no
   socket in the figure), its live view loaded; the overview and the first page
   of executions, each timed 30 times after a warm-up (median, p95, max). Also
   the filtered page (state + task + key prefix: a scan of the index), and the
   two listings read from the work stream (scheduled executions, the next hour).
   And one execution's page (read through `get_execution`).
2. NATS load: `docket-nats dashboard` in its own process, with 1 and then 20
   open event streams (the pages' live feed, each following the 50 keys of an
   executions page, as the executions list does); the server's in_msgs +
   out_msgs (/varz) per second over `--seconds`, nothing else connected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from docket_nats import Docket
from docket_nats._embedded import ServerProcess, free_port
from docket_nats._state_records import ExecutionRecord, encode_record, state_subject, ttl_header
from docket_nats.dashboard import app

FUNCTIONS = [f"task_{index}" for index in range(8)]


async def noop(label: str) -> None:
    """The task the scheduled load calls (never run here)."""


def varz(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


async def fill(docket: Docket, records: int, scheduled: int) -> None:
    started = time.perf_counter()
    nc = docket.connection.nc
    now = datetime.now(UTC)
    headers = ttl_header(timedelta(hours=1))
    for index in range(records):
        state = "completed" if index % 50 < 45 else "failed" if index % 50 < 49 else "cancelled"
        record = ExecutionRecord(
            state=state,
            function=FUNCTIONS[index % len(FUNCTIONS)],
            when=now,
            sequence=index + 1,
            worker="bench-worker",
            started_at=now,
            completed_at=now - timedelta(seconds=index % 900),
            error="ValueError: boom" if state == "failed" else None,
        )
        await nc.publish(
            state_subject(docket.names, f"record-{index:06}"),
            encode_record(record),
            headers=headers,
        )
        if index % 5000 == 4999:
            await nc.flush()
    await nc.flush()
    later = now + timedelta(minutes=5)
    calls = [
        docket.call(noop, when=later + timedelta(seconds=index % 3000), key=f"later-{index:05}")(
            f"n{index}"
        )
        for index in range(scheduled)
    ]
    await docket.add_many(calls)
    print(f"filled: {records:,} records, {scheduled:,} scheduled in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return (
        f"{label}: median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, "
        f"max {ordered[-1]:.1f} ms ({len(ordered)} requests)"
    )


async def render_times(docket: Docket, rounds: int) -> None:
    application = app(docket)
    live = application.state.dashboard.live
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        started = time.perf_counter()
        await client.get("/")
        await live.loaded.wait()
        await live.count()
        print(f"live view loaded in {time.perf_counter() - started:.1f} s: "
              f"{len(live.rows):,} records, counts {live.summary['counts']}")  # fmt: skip
        for label, path in (
            ("overview", "/"),
            ("executions, first page", "/executions"),
            ("executions, filtered", "/executions?state=failed&function=task_3&prefix=record-01"),
            ("executions, scheduled", "/executions?state=scheduled"),
            ("scheduled, next hour", "/scheduled"),
            ("one execution", "/execution?key=record-000042"),
        ):
            await client.get(path)
            samples: list[float] = []
            for _ in range(rounds):
                begun = time.perf_counter()
                response = await client.get(path)
                samples.append((time.perf_counter() - begun) * 1000)
                assert response.status_code == 200
            print(summary(label, samples))
    await live.stop()


async def message_rate(
    url: str, name: str, monitor: int, pages: int, seconds: float
) -> float:  # fmt: skip
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", "dashboard", "--url", url, "--docket", name,
        "--port", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(600):
                try:
                    await client.get("/login")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            received = [0] * pages

            async def page(index: int) -> None:
                keys = "&".join(f"key=record-{50 * index + each:06}" for each in range(50))
                async with client.stream("GET", f"/events?{keys}") as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            received[index] += 1

            readers = [asyncio.create_task(page(index)) for index in range(pages)]
            await asyncio.sleep(3)  # every page connected, the view loaded
            before, begun = varz(monitor), time.perf_counter()
            await asyncio.sleep(seconds)
            after, elapsed = varz(monitor), time.perf_counter() - begun
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        process.terminate()
        await process.wait()
    delta = (after["in_msgs"] - before["in_msgs"]) + (after["out_msgs"] - before["out_msgs"])
    rate = delta / elapsed
    print(f"{pages:>2} open pages: {rate:.1f} NATS messages/s (in + out), "
          f"{min(received)}-{max(received)} summaries per page")  # fmt: skip
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--scheduled", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args()
    monitor = free_port()
    server = ServerProcess(
        free_port(),
        Path(tempfile.mkdtemp(prefix="dashboard-bench-")),
        extra_args=["-m", str(monitor)],
    )
    server.start()
    try:
        async with Docket(name="bench", url=server.url) as docket:
            docket.register(noop)
            await fill(docket, options.records, options.scheduled)
            await render_times(docket, options.rounds)
        one = await message_rate(server.url, "bench", monitor, 1, options.seconds)
        twenty = await message_rate(server.url, "bench", monitor, 20, options.seconds)
        print(f"20 pages vs 1: {100 * (twenty - one) / one:+.1f}% NATS messages")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
