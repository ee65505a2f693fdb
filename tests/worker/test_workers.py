"""Worker heartbeats: who is alive, and what each worker can run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from docket_nats import Docket, Worker


async def wait_for_workers(docket: Docket, count: int, within: float = 5.0) -> None:
    # Polled: a heartbeat expiring by TTL produces no event anyone could await.
    async with asyncio.timeout(within):
        while len(await docket.workers()) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_running_worker_is_listed_with_its_tasks(docket: Docket) -> None:
    async def reconcile() -> None: ...

    docket.register(reconcile)
    async with Worker(docket, name="worker-a") as worker:
        running = asyncio.create_task(worker.run_forever())
        await wait_for_workers(docket, 1)
        (info,) = await docket.workers()
        assert info.name == "worker-a"
        assert {"reconcile", "trace", "fail", "sleep"} <= info.tasks
        assert [w.name for w in await docket.task_workers("reconcile")] == ["worker-a"]
        assert await docket.task_workers("nobody-runs-this") == []
        worker.stop()
        await running
    # A clean stop removes the entry at once instead of waiting out the TTL.
    assert await docket.workers() == []


async def test_a_silent_worker_expires(nats_url: str, docket_name: str) -> None:
    async with Docket(
        name=docket_name,
        url=nats_url,
        heartbeat_interval=timedelta(milliseconds=200),
        missed_heartbeats=5,
    ) as docket:
        async with Worker(docket, name="worker-b") as worker:
            running = asyncio.create_task(worker.run_forever())
            await wait_for_workers(docket, 1)
            # Stop beating without the clean goodbye: as if the process died.
            await worker._supervisor.stop("heartbeat")  # pyright: ignore[reportPrivateUsage]
            await wait_for_workers(docket, 0, within=5.0)
            worker.stop()
            await running
