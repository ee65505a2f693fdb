"""A benchmark worker in a process of its own (for drains and RSS).

    python -m benchmarks.worker_process --backend nats|redis --url URL --docket NAME
        [--concurrency N] drain --expect N --deadline SECONDS
    python -m benchmarks.worker_process ... serve --every N

`drain` runs the backend's own Worker (its defaults, but for --concurrency) on
tasks loaded beforehand, and prints one JSON line: how many no-ops ran, and the
seconds from the worker's start (after it connected and set up) to the last
completion. `serve` runs until SIGTERM and prints the count every N completions,
so the parent knows when a chunk is done (it reads this process's RSS itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

from benchmarks import tasks
from benchmarks.backends import module_for


async def run(arguments: argparse.Namespace) -> None:
    module = module_for(arguments.backend)
    options: dict[str, Any] = {}
    if arguments.concurrency is not None:
        options["concurrency"] = arguments.concurrency
    reached = asyncio.Event()
    if arguments.command == "drain":

        def completed(count: int) -> None:
            if count >= arguments.expect:
                reached.set()

    else:

        def completed(count: int) -> None:
            if count % arguments.every == 0:
                print(count, flush=True)

    tasks.on_completed = completed
    async with module.Docket(name=arguments.docket, url=arguments.url) as docket:
        docket.register(tasks.noop)
        async with module.Worker(docket, **options) as worker:
            started = time.perf_counter()
            running = asyncio.create_task(worker.run_forever())
            if arguments.command == "drain":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(arguments.deadline):
                        await reached.wait()
            else:
                stop = asyncio.Event()
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
                print("ready", flush=True)
                await stop.wait()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    if arguments.command == "drain":
        elapsed = (tasks.last_completed_at or time.perf_counter()) - started
        print(json.dumps({"completed": tasks.completed, "seconds": elapsed}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["nats", "redis"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--docket", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    drain = commands.add_parser("drain")
    drain.add_argument("--expect", type=int, required=True)
    drain.add_argument("--deadline", type=float, required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--every", type=int, required=True)
    asyncio.run(run(parser.parse_args()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
