"""1,000 perpetual tasks at every=1s on one worker: executions/s and interval drift.

    python benchmarks/perpetual.py [--tasks 1000] [--seconds 30] [--every 1.0]
        [--concurrency 10] [--url nats://...] [--fire-early-ms 300]

Without --url it starts a nats-server of its own (file storage, 127.0.0.1, a
temporary directory). Each run records its start time; the report gives
executions per second against the expected tasks/every, and per task the drift
of each interval from `every` (|interval - every|), p50/p99/max, and the
lateness of each run after the time it was due.

`--fire-early-ms N` is an experiment, not a product setting: it makes the
server fire each schedule N ms before it is due and lets the worker hold the
message to its exact time (a way to beat the server's 250 ms scheduler passes,
docs/nats-facts.md §3). The hold happens inside a run slot today, so it
needs a concurrency of about rate x N ms (e.g. 400 for 1,000/s at 300 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from docket_nats import CurrentExecution, Docket, Execution, Perpetual, TaskKey, Worker
from docket_nats._embedded import ServerProcess, free_port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(url: str, tasks: int, seconds: float, every: float, concurrency: int) -> None:
    starts: dict[str, list[float]] = defaultdict(list)
    lateness: list[float] = []
    measuring = False

    async def pulse(
        key: str = TaskKey(),
        execution: Execution = CurrentExecution(),
        perpetual: Perpetual = Perpetual(every=timedelta(seconds=every)),
    ) -> None:
        if measuring:
            now = time.time()
            starts[key].append(now)
            lateness.append(now - execution.when.timestamp())

    async with Docket(name=f"bench-perpetual-{int(time.time())}", url=url) as docket:
        # Spread the first runs over one interval, as a fleet of perpetual tasks
        # started at different times would be.
        begin = datetime.now(UTC) + timedelta(seconds=1)
        calls = [
            docket.call(pulse, when=begin + timedelta(seconds=every * i / tasks), key=f"p{i}")()
            for i in range(tasks)
        ]
        await docket.add_many(calls)
        async with Worker(docket, concurrency=concurrency) as worker:
            running = asyncio.create_task(worker.run_forever())
            await asyncio.sleep(1 + 2 * every)  # warm up: every chain has run
            measuring = True
            window_start = time.time()
            await asyncio.sleep(seconds)
            measuring = False
            window = time.time() - window_start
            worker.stop()
            await running

    executions = sum(len(times) for times in starts.values())
    expected = tasks * window / every
    drifts = [
        abs((later - earlier) - every) * 1000
        for times in starts.values()
        for earlier, later in itertools.pairwise(times)
    ]
    late_ms = [value * 1000 for value in lateness]
    print(f"tasks={tasks} every={every}s window={window:.1f}s concurrency={concurrency}")
    print(
        f"executions: {executions} = {executions / window:.1f}/s, expected "
        f"{expected / window:.1f}/s ({100 * executions / expected:.2f}%)"
    )
    print(
        f"interval drift ms: p50 {percentile(drifts, 0.5):.1f}  p99 "
        f"{percentile(drifts, 0.99):.1f}  max {max(drifts):.1f}  (n={len(drifts)})"
    )
    print(
        f"lateness after due ms: p50 {percentile(late_ms, 0.5):.1f}  p99 "
        f"{percentile(late_ms, 0.99):.1f}  max {max(late_ms):.1f}  mean "
        f"{statistics.fmean(late_ms):.1f}"
    )


def fire_early(lead: timedelta) -> None:
    """Experiment: schedules fire `lead` early; the executor holds them until due."""
    from docket_nats import _work_stream
    from docket_nats import docket as docket_module
    from docket_nats._subjects import SCHEDULE, Names

    placement = _work_stream.placement

    def early(names: Names, key: str, when: datetime) -> tuple[str, dict[str, str]]:
        subject, headers = placement(names, key, when)
        if SCHEDULE in headers:
            fire = max(datetime.now(UTC), when - lead)
            headers[SCHEDULE] = f"@at {_work_stream.schedule_time(fire)}"
        return subject, headers

    # Both the producer and reschedules place tasks through it.
    _work_stream.placement = early
    docket_module.placement = early  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url", default=None)
    parser.add_argument("--fire-early-ms", type=float, default=0.0)
    arguments = parser.parse_args()
    if arguments.fire_early_ms:
        fire_early(timedelta(milliseconds=arguments.fire_early_ms))
    server: ServerProcess | None = None
    url = arguments.url
    if url is None:
        server = ServerProcess(free_port(), Path(tempfile.mkdtemp(prefix="bench-perpetual-")))
        server.start()
        url = server.url
    try:
        asyncio.run(
            measure(url, arguments.tasks, arguments.seconds, arguments.every, arguments.concurrency)
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
