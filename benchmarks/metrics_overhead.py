"""Worker drain with metrics served: two versions of docket_nats, alternating.

    python benchmarks/metrics_overhead.py --before DIR [--after DIR] [--tasks 10000]
        [--rounds 5] [--concurrency 10] [--url nats://...]

DIR is a directory holding a `docket_nats` package (e.g. `git archive <commit>
docket_nats | tar -x -C DIR`); --after defaults to this checkout. Each round
drains the same number of no-op tasks once with each version, in a fresh
process (PYTHONPATH=DIR, started outside the checkout so that it is not
imported instead), alternating which goes first, so drift of a shared machine
hits both alike. Every drain runs one Worker (concurrency 10 by default) with
`serve_metrics` on and scraped twice a second, far more often than Prometheus
would. Reports the median tasks/s and the median CPU microseconds per task of
the draining process (the steadier figure). Without --url a nats-server of its
own is started (file storage, 127.0.0.1).
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
import uuid
from datetime import timedelta
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
SCRAPE_EVERY = 0.5


async def noop() -> None:
    pass


async def scrape(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    await writer.drain()
    body = await reader.read()
    writer.close()
    return len(body)


async def drain(url: str, tasks: int, concurrency: int) -> dict[str, float]:
    """One drain in this process, with metrics served and scraped."""
    from docket_nats import Docket, Worker
    from docket_nats._metrics_exporter import serve_metrics

    async with Docket(name=f"bench-metrics-{uuid.uuid4().hex[:8]}", url=url) as docket:
        docket.register(noop)
        await docket.add_many(docket.call(noop)() for _ in range(tasks))
        async with (
            serve_metrics(docket, 0) as port,
            Worker(
                docket, concurrency=concurrency, minimum_check_interval=timedelta(milliseconds=5)
            ) as worker,
        ):
            assert port is not None
            scrapes = 0

            async def scraping() -> None:
                nonlocal scrapes
                while True:
                    await asyncio.sleep(SCRAPE_EVERY)
                    await scrape(port)
                    scrapes += 1

            scraper = asyncio.create_task(scraping())
            started, cpu = time.perf_counter(), time.process_time()
            await worker.run_until_finished()
            elapsed = time.perf_counter() - started
            used = time.process_time() - cpu
            scraper.cancel()
            last = await scrape(port)
    return {
        "rate": tasks / elapsed,
        "cpu_us": used / tasks * 1e6,
        "scrapes": scrapes,
        "bytes": last,
    }


def run_version(code: Path, url: str, tasks: int, concurrency: int) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--drain",
            "--url",
            url,
            "--tasks",
            str(tasks),
            "--concurrency",
            str(concurrency),
        ],
        cwd=tempfile.gettempdir(),  # not the checkout: PYTHONPATH decides the version
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path)
    parser.add_argument("--after", type=Path, default=CHECKOUT)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url")
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.drain:
        figures = asyncio.run(drain(arguments.url, arguments.tasks, arguments.concurrency))
        print(json.dumps(figures))
        return
    if arguments.before is None:
        parser.error("--before DIR is required")

    from docket_nats._embedded import ServerProcess, free_port

    server = None
    url = arguments.url
    if url is None:
        server = ServerProcess(free_port(), Path(tempfile.mkdtemp(prefix="bench-metrics-")))
        server.start()
        url = server.url
    versions = {"before": arguments.before.resolve(), "after": arguments.after.resolve()}
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    try:
        for round_number in range(arguments.rounds):
            order = ["before", "after"] if round_number % 2 == 0 else ["after", "before"]
            for version in order:
                figures = run_version(
                    versions[version], url, arguments.tasks, arguments.concurrency
                )
                results[version].append(figures)
                print(
                    f"round {round_number + 1} {version:6}: {figures['rate']:8.0f} tasks/s, "
                    f"{figures['cpu_us']:6.1f} µs CPU/task, {figures['scrapes']:.0f} scrapes, "
                    f"last scrape {figures['bytes']:.0f} bytes",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    for version in ("before", "after"):
        rates = [figures["rate"] for figures in results[version]]
        cpus = [figures["cpu_us"] for figures in results[version]]
        print(
            f"{version:6}: median {statistics.median(rates):8.0f} tasks/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f}); "
            f"median {statistics.median(cpus):.1f} µs CPU/task "
            f"(min {min(cpus):.1f}, max {max(cpus):.1f})"
        )


if __name__ == "__main__":
    main()
