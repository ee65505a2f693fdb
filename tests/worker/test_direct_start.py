"""A run started straight from its delivery (an idle worker with a free run slot
starts it without waiting for the executor's loop): it runs in the worker's
context like any other run."""

from __future__ import annotations

import asyncio

import pytest

from docket_nats import CurrentDocket, CurrentWorker, Docket, Worker
from docket_nats.dependencies import current_worker_context

pytestmark = pytest.mark.timeout(30)


async def test_a_run_started_on_an_idle_worker_sees_its_worker_and_docket(
    docket: Docket,
) -> None:
    seen: list[tuple[str, Worker, Docket, str]] = []
    ran = asyncio.Event()

    async def probe(
        label: str, worker: Worker = CurrentWorker(), current: Docket = CurrentDocket()
    ) -> None:
        seen.append((label, worker, current, current_worker_context.get().name))
        ran.set()

    docket.register(probe)
    async with Worker(docket, name="direct", concurrency=2) as worker:
        running = asyncio.create_task(worker.run_forever())
        for label in ("first", "second", "third"):
            # Each one arrives at an idle worker: nothing waits, a slot is free.
            ran.clear()
            await docket.add(probe)(label)
            async with asyncio.timeout(10):
                await ran.wait()
        worker.stop()
        await running
    assert [label for label, *_ in seen] == ["first", "second", "third"]
    for _, their_worker, their_docket, worker_name in seen:
        assert their_worker is worker
        assert their_docket is docket
        assert worker_name == "direct"
