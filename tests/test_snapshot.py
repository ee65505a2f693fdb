"""docket.snapshot(): counts from the server, bounded listings, running tasks
with their workers; docket.clear()."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import Docket, ExecutionState, Worker

pytestmark = pytest.mark.timeout(60)


async def noop(n: int) -> None:
    pass


async def test_empty_docket(docket: Docket) -> None:
    snapshot = await docket.snapshot()
    assert snapshot.total_tasks == 0
    assert list(snapshot.future) == [] and list(snapshot.running) == []
    assert snapshot.taken <= datetime.now(UTC)


async def test_ten_thousand_scheduled_tasks_are_counted_not_loaded(docket: Docket) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    executions = await docket.add_many(docket.call(noop, later)(n) for n in range(10_000))
    assert all(e.disposition.value == "scheduled" for e in executions)
    await docket.add(noop)(-1)  # one queued, no worker

    started = time.monotonic()
    snapshot = await docket.snapshot(limit=100)
    elapsed = time.monotonic() - started

    assert snapshot.total_tasks == 10_001
    assert snapshot.scheduled_count == 10_000
    assert snapshot.queued_count == 1
    assert snapshot.running_count == 0
    assert snapshot.truncated
    scheduled = [e for e in snapshot.future if e.state is ExecutionState.SCHEDULED]
    queued = [e for e in snapshot.future if e.state is ExecutionState.QUEUED]
    assert len(scheduled) == 100 and len(queued) == 1
    assert scheduled[0].args == (0,) and scheduled[0].function_name == "noop"
    assert queued[0].args == (-1,)
    assert elapsed < 5, elapsed


async def test_running_tasks_show_their_worker(docket: Docket, worker: Worker) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> None:
        started.set()
        await release.wait()

    await docket.add(slow, key="slow-one")()
    await docket.add(noop, datetime.now(UTC) + timedelta(hours=1), key="later")(1)
    running = asyncio.create_task(worker.run_until_finished())
    try:
        await started.wait()
        # The worker's RUNNING record is a publish without an ack: poll, bounded.
        async with asyncio.timeout(5):
            while True:
                snapshot = await docket.snapshot()
                if snapshot.running:
                    break
                await asyncio.sleep(0.02)
        assert [r.key for r in snapshot.running] == ["slow-one"]
        assert snapshot.running[0].worker == worker.name
        assert snapshot.running[0].state is ExecutionState.RUNNING
        assert [e.key for e in snapshot.future] == ["later"]
        assert snapshot.total_tasks == 2
        assert [w.name for w in snapshot.workers] == [worker.name]
    finally:
        release.set()
        await docket.cancel("later")
        await running


async def test_clear_removes_scheduled_and_queued_tasks(docket: Docket) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await docket.add_many(docket.call(noop, later)(n) for n in range(50))
    await docket.add(noop, key="now")(0)
    assert await docket.clear() == 51
    snapshot = await docket.snapshot()
    assert snapshot.total_tasks == 0
    # The keys are free again.
    again = await docket.add(noop, key="now")(0)
    assert again.disposition.value == "scheduled"
