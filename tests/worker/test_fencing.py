"""A worker cut off from the server (through deploy/tcp_proxy.py) fences itself:
its runs stop before the server redelivers them to another worker, so a key
never runs twice at once, and it takes work again once contact is back.

The evidence is an interval log written by the task itself (outside the workers):
for every key, when each copy started and when it stopped running.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from deploy.tcp_proxy import TcpProxy, tcp_proxy
from docket_nats import CurrentWorker, Docket, TaskKey, Worker
from docket_nats._embedded import ServerProcess
from docket_nats.worker._contact import FENCE_MARGIN

REDELIVERY = 1.5  # seconds: short, so that many partitions fit in a test
# Repeated partitions; the issue asks for 50. Each takes about 3 s (the
# redelivery timeout, a worker started and stopped, a reconnection), so the
# default suite runs 10 (~55 s) and CI's fault step sets 50 (~4.5 min).
TRIALS = int(os.environ.get("DOCKET_NATS_PARTITION_TRIALS", "10"))
# One key per partition: the server redelivered a partitioned worker's keys one
# per ack wait (1.5 s, 3 s, 4.5 s after the cut, measured), so more keys per
# trial cost more time than more trials do.
KEYS_PER_TRIAL = 1

pytestmark = pytest.mark.timeout(60 + TRIALS * 10)


@dataclass
class Interval:
    worker: str
    start: float
    end: float | None = None


@dataclass
class RunLog:
    """Per key, the intervals during which a copy of it was running."""

    runs: dict[str, list[Interval]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def overlaps(self) -> list[tuple[str, Interval, Interval]]:
        found: list[tuple[str, Interval, Interval]] = []
        for key, intervals in self.runs.items():
            ordered = sorted(intervals, key=lambda interval: interval.start)
            for before, after in itertools.pairwise(ordered):
                assert before.end is not None, f"{key}: a run that never ended"
                if after.start < before.end:
                    found.append((key, before, after))
        return found

    async def until(self, condition: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run_forever())
    try:
        yield task
    finally:
        worker.stop()
        await task


def partitioned_pair(
    nats_server: ServerProcess, name: str, proxy: TcpProxy
) -> tuple[Docket, Docket]:
    """Docket A reaches the server through the proxy; docket B directly."""
    return Docket(name=name, url=proxy.url), Docket(name=name, url=nats_server.url)


def worker_for(docket: Docket, name: str) -> Worker:
    return Worker(
        docket,
        name=name,
        redelivery_timeout=timedelta(seconds=REDELIVERY),
        shutdown_grace=timedelta(seconds=1),
    )


async def test_a_partitioned_worker_stops_its_runs_before_they_are_redelivered(
    nats_server: ServerProcess, docket_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="docket_nats")
    log = RunLog()

    async def hold(key: str = TaskKey(), worker: Worker = CurrentWorker()) -> None:
        interval = Interval(worker.name, time.monotonic())
        log.runs[key].append(interval)
        log.changed.set()
        try:
            if worker.name == "A":  # runs until fenced
                await asyncio.sleep(3600)
        finally:
            interval.end = time.monotonic()
            log.changed.set()

    async with tcp_proxy(nats_server.port) as proxy:
        docket_a, docket_b = partitioned_pair(nats_server, docket_name, proxy)
        async with docket_a, docket_b:
            docket_a.register(hold)
            docket_b.register(hold)
            async with worker_for(docket_a, "A") as worker_a, running(worker_a):
                for trial in range(TRIALS):
                    keys = [f"trial-{trial}-{index}" for index in range(KEYS_PER_TRIAL)]
                    for key in keys:
                        await docket_b.add(hold, key=key)()

                    def started_on_a(keys: list[str] = keys) -> bool:
                        return all(log.runs[key] for key in keys)

                    # (After a partition, A takes work again once contact is back.)
                    await log.until(started_on_a, within=15)
                    assert {log.runs[key][0].worker for key in keys} == {"A"}

                    proxy.black_hole()
                    async with worker_for(docket_b, "B") as worker_b, running(worker_b):

                        def ran_on_b(keys: list[str] = keys) -> bool:
                            return all(
                                len(log.runs[key]) == 2 and log.runs[key][1].end is not None
                                for key in keys
                            )

                        await log.until(ran_on_b, within=15)
                    proxy.cut()  # the black-holed connection is garbage: reconnect
                    proxy.heal()

                    for key in keys:
                        first, second = log.runs[key]
                        assert (first.worker, second.worker) == ("A", "B")
                        assert first.end is not None and first.end <= second.start, (
                            f"{key}: A still ran when B started it"
                        )

    assert log.overlaps() == []
    assert sum(len(intervals) for intervals in log.runs.values()) == 2 * KEYS_PER_TRIAL * TRIALS
    fenced = [r.getMessage() for r in caplog.records if "fencing itself" in r.getMessage()]
    assert len(fenced) >= TRIALS
    assert "no round trip to the server answered" in fenced[0]


async def partition_a_running_task(
    nats_server: ServerProcess,
    docket_name: str,
    task: Callable[..., Awaitable[None]],
    started: asyncio.Event,
    after: Callable[[], None],
) -> None:
    """Run `task` on a worker behind the proxy; black-hole it; wait out the fence."""
    async with tcp_proxy(nats_server.port) as proxy:
        docket_a, docket_b = partitioned_pair(nats_server, docket_name, proxy)
        async with docket_a, docket_b:
            docket_a.register(task)
            await docket_b.add(task, key="stubborn")()
            async with worker_for(docket_a, "A") as worker_a, running(worker_a):
                async with asyncio.timeout(10):
                    await started.wait()
                proxy.black_hole()
                # Past the fence, before the redelivery: the report is made by then.
                await asyncio.sleep(REDELIVERY)
                after()
                proxy.cut()
                proxy.heal()


def refused(task: str) -> float:
    """docket_tasks_fence_refused for `task`, as a scrape reads it (prometheus-client)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "docket_tasks_fence_refused"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("task") == task
    )


async def test_a_task_that_ignores_its_cancellation_is_reported_loudly(
    nats_server: ServerProcess, docket_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="docket_nats")
    started, release = asyncio.Event(), asyncio.Event()

    async def obstinate() -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # refuses to stop

    before = refused("obstinate")
    await partition_a_running_task(nats_server, docket_name, obstinate, started, release.set)

    assert refused("obstinate") == before + 1
    (line,) = [
        r.getMessage() for r in caplog.records if "did not stop when fenced" in r.getMessage()
    ]
    grace = REDELIVERY * FENCE_MARGIN / 2
    assert line == (
        f"worker A: task 'stubborn' (obstinate) did not stop when fenced (still running "
        f"{grace:.3g}s after its cancellation); it may run alongside its redelivered copy"
    )


async def test_a_synchronous_task_is_reported_as_unstoppable_when_fenced(
    nats_server: ServerProcess, docket_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="docket_nats")
    started = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    def blocking() -> None:
        loop.call_soon_threadsafe(started.set)
        release.wait(timeout=30)

    before = refused("blocking")
    await partition_a_running_task(nats_server, docket_name, blocking, started, release.set)

    assert refused("blocking") == before + 1
    assert [
        r.getMessage() for r in caplog.records if "did not stop when fenced" in r.getMessage()
    ] == [
        "worker A: task 'stubborn' (blocking) did not stop when fenced (a synchronous "
        "task's thread cannot be stopped); it may run alongside its redelivered copy"
    ]
