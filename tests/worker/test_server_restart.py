"""The server restarts under 1,000 queued and 1,000 scheduled tasks: all 2,000 run,
and no key runs twice at the same time (an interval log written by the task itself)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import Docket, TaskKey, Worker
from docket_nats._embedded import ServerProcess

pytestmark = pytest.mark.timeout(180)

QUEUED = SCHEDULED = 1000


async def test_all_tasks_run_once_at_a_time_across_a_server_restart(
    own_server: ServerProcess, docket_name: str
) -> None:
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    done: set[str] = set()
    all_done = asyncio.Event()
    some_started = asyncio.Event()  # 200 done: time to restart the server

    async def work(key: str = TaskKey()) -> None:
        started = time.monotonic()
        try:
            await asyncio.sleep(0.01)
        finally:
            runs[key].append((started, time.monotonic()))
        done.add(key)
        if len(done) >= 200:
            some_started.set()
        if len(done) == QUEUED + SCHEDULED:
            all_done.set()

    async with Docket(name=docket_name, url=own_server.url) as docket:
        docket.register(work)
        soon = datetime.now(UTC) + timedelta(seconds=3)
        for n in range(QUEUED):
            await docket.add(work, key=f"queued-{n}")()
        for n in range(SCHEDULED):  # due over 3-5 s from now: around the restart
            await docket.add(
                work, key=f"scheduled-{n}", when=soon + timedelta(milliseconds=2 * n)
            )()

        workers = [
            Worker(docket, name=f"w{index}", concurrency=5, redelivery_timeout=timedelta(seconds=5))
            for index in range(2)
        ]
        async with workers[0], workers[1]:
            running = [asyncio.create_task(worker.run_forever()) for worker in workers]
            try:
                async with asyncio.timeout(30):
                    await some_started.wait()
                await asyncio.to_thread(own_server.stop)
                await asyncio.to_thread(own_server.start)
                async with asyncio.timeout(120):
                    await all_done.wait()
            finally:
                for worker in workers:
                    worker.stop()
                await asyncio.gather(*running)

    assert len(done) == QUEUED + SCHEDULED
    overlapping = [
        key
        for key, intervals in runs.items()
        for before, after in itertools.pairwise(sorted(intervals))
        if after[0] < before[1]
    ]
    assert overlapping == []
    duplicates = sum(len(intervals) - 1 for intervals in runs.values())
    print(f"runs after the first across the restart: {duplicates}")
