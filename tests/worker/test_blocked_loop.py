"""A task that blocks its worker's event loop (time.sleep in an async task, no
await) for longer than the redelivery timeout, on a real server: the lifeline
thread keeps its leases, so no copy runs elsewhere meanwhile, and the block is
reported (docs/architecture.md, "A blocked event loop"). A sync task doing the
same keeps its lease through the loop itself."""

from __future__ import annotations

import asyncio
import json
import logging
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


@pytest.mark.parametrize(
    "connect_options",
    [
        pytest.param({}, id="default-options"),
        # Options the lifeline's own connection also sets: the user's used to
        # collide with them (TypeError every round: no lease was ever renewed).
        pytest.param(
            {"connect_timeout": 3, "name": "x", "allow_reconnect": True}, id="user-options"
        ),
    ],
)
async def test_a_blocked_loop_keeps_its_leases_through_the_lifeline(
    nats_url: str, docket_name: str, tmp_path: Path, connect_options: dict[str, object]
) -> None:
    """Measured before the lifeline: the copy was redelivered to the other worker
    1.5 s into the 4 s block, and ran while the first still did; the fence then
    cancelled the first when its loop woke."""
    async with Docket(name=docket_name, url=nats_url) as docket:
        docket.register(worker_process.block)
        probe = await Probe.start(docket)
        blocked = await spawn(
            tmp_path / "blocked.log",
            nats_url,
            docket_name,
            "--redelivery-timeout",
            str(REDELIVERY),
            "--connect-options",
            json.dumps(connect_options),
        )
        try:
            await docket.add(worker_process.block, key="b")("b", BLOCK, blocked.pid)
            first = await probe.wait_event("started", "b")
            assert first.pid == blocked.pid
            worker = other_worker(docket)  # pulling all along: a redelivery comes here
            async with worker:
                running = asyncio.create_task(worker.run_forever())
                try:
                    done = await probe.wait_event("done", "b", within=BLOCK + 10)
                    await blocked.wait_log("event loop blocked for", within=10)
                finally:
                    worker.stop()
                    await running
            assert done.pid == blocked.pid  # it ran to its end where it began
            assert [event.pid for event in probe.matching("started", "b")] == [blocked.pid]
            log = blocked.log_text()
            assert "block{b}" in log  # the report names the task that blocked
            assert "rounds of lease renewals from the lifeline thread" in log
            assert "fencing itself" not in log
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


def test_a_block_the_lifeline_did_not_cover_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import REGISTRY

    from docket_nats.worker._contact import Contact
    from docket_nats.worker._lifeline import Lifeline
    from docket_nats.worker._loop_watch import LoopWatch

    lifeline = Lifeline("w", Contact(), lambda: REDELIVERY, list, dict)
    watch = LoopWatch("blocked-docket", lifeline, lambda: [("k", "crunch")])
    sample = {"docket": "blocked-docket", "task": "crunch"}
    before = REGISTRY.get_sample_value("docket_tasks_blocked_loop_total", sample) or 0.0
    with caplog.at_level(logging.WARNING, logger="docket_nats.worker"):
        watch.report(0.5, REDELIVERY, rounds=0)  # within the margin: a warning
        watch.report(2.0, REDELIVERY, rounds=3)  # the lifeline renewed: a warning
        watch.report(2.0, REDELIVERY, rounds=0)  # leases may have lapsed: an error
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert "crunch{k}" in caplog.records[-1].getMessage()
    after = REGISTRY.get_sample_value("docket_tasks_blocked_loop_total", sample)
    assert after == before + 1
