"""A task that blocks its worker's event loop (time.sleep in an async task, no
await) for longer than the redelivery timeout, on a real server: what happens is
measured and pinned here (docs/architecture.md, "A blocked event loop"), and the
remedy, a sync task, is shown to keep its lease."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from docket_nats import Docket, Worker
from tests import worker_process
from tests.worker_process import Probe, spawn

pytestmark = pytest.mark.timeout(60)

REDELIVERY = 1.5
BLOCK = 4.0  # > REDELIVERY: the leases lapse while the loop is blocked


def other_worker(docket: Docket) -> Worker:
    return Worker(
        docket,
        redelivery_timeout=timedelta(seconds=REDELIVERY),
        prefetch=0,
        minimum_check_interval=timedelta(milliseconds=20),
        schedule_automatic_tasks=False,
    )


async def test_a_blocked_loop_loses_its_leases_and_says_so(
    nats_url: str, docket_name: str, tmp_path: Path
) -> None:
    async with Docket(name=docket_name, url=nats_url) as docket:
        docket.register(worker_process.block)
        probe = await Probe.start(docket)
        blocked = await spawn(
            tmp_path / "blocked.log",
            nats_url,
            docket_name,
            "--redelivery-timeout",
            str(REDELIVERY),
        )
        try:
            await docket.add(worker_process.block, key="b")("b", BLOCK, blocked.pid)
            first = await probe.wait_event("started", "b")
            assert first.pid == blocked.pid
            began = time.monotonic()
            worker = other_worker(docket)
            async with worker:
                running = asyncio.create_task(worker.run_forever())
                try:
                    # Measured: the server redelivers the run after the redelivery
                    # timeout, while the first copy is still blocked: two at once.
                    second = await probe.wait_event("started", "b", count=2, within=10)
                    redelivered_after = time.monotonic() - began
                    assert second.pid != blocked.pid
                    assert redelivered_after < BLOCK
                    await probe.wait_event("done", "b", within=10)
                    # When its loop runs again, the blocked worker says why, names
                    # the task, and its fence cancels the run at its next await.
                    await blocked.wait_log("event loop blocked for", within=10)
                    await blocked.wait_log("fencing itself", within=10)
                finally:
                    worker.stop()
                    await running
            log = blocked.log_text()
            assert "past the redelivery timeout" in log
            assert "block{b}" in log
            assert "(fenced)" in log
            assert [event.pid for event in probe.matching("done", "b")] == [second.pid]
        finally:
            await blocked.kill()


async def test_blocking_work_in_a_sync_task_keeps_its_lease(
    nats_url: str, docket_name: str
) -> None:
    """The rule's remedy: a sync task runs in a worker thread, the loop renews its
    lease, and nobody else runs it meanwhile."""
    starts: list[str] = []
    lock = threading.Lock()

    def crunch() -> None:
        with lock:
            starts.append(threading.current_thread().name)
        time.sleep(BLOCK)

    async with Docket(name=docket_name, url=nats_url) as docket:
        docket.register(crunch)
        await docket.add(crunch, key="crunch")()
        first, second = other_worker(docket), other_worker(docket)
        async with first, second:
            await asyncio.gather(first.run_until_finished(), second.run_until_finished())
    assert len(starts) == 1
