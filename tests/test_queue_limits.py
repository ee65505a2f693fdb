"""The work stream's admission limit: add() raises QueueFull, naming the limit,
when the stream is full; nothing accepted before is lost (docket_nats/_queue_bound.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import Disposition, Docket, QueueFull, Worker
from docket_nats._settings import InvalidSetting

pytestmark = pytest.mark.timeout(60)


def quick_worker(docket: Docket) -> Worker:
    return Worker(
        docket,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


async def test_a_full_stream_refuses_add_within_a_second_and_loses_nothing(
    nats_url: str, docket_name: str
) -> None:
    ran: list[int] = []

    async def job(n: int) -> None:
        ran.append(n)

    async with Docket(name=docket_name, url=nats_url, max_queued_tasks=20) as docket:
        later = datetime.now(UTC) + timedelta(seconds=1)
        # Queued and scheduled tasks both count.
        accepted = [await docket.add(job)(n) for n in range(10)]
        accepted += [await docket.add(job, when=later)(n) for n in range(10, 20)]
        assert all(e.disposition is Disposition.SCHEDULED for e in accepted)

        started = time.monotonic()
        with pytest.raises(QueueFull) as refused:
            await docket.add(job)(20)
        assert time.monotonic() - started < 1.0
        assert refused.value.limit == "max_queued_tasks"
        assert (refused.value.maximum, refused.value.current) == (20, 20)
        assert "max_queued_tasks=20" in str(refused.value)
        assert "20 tasks" in str(refused.value)
        # Gathered adds at the limit are refused too, each with the error.
        gathered = await asyncio.gather(
            *(docket.add(job)(n) for n in range(21, 31)), return_exceptions=True
        )
        assert all(isinstance(outcome, QueueFull) for outcome in gathered)

        async with quick_worker(docket) as worker:
            await worker.run_until_finished()
        assert sorted(ran) == list(range(20))  # every accepted task ran, once

        # Drained: admitted again (the stream is read again on refusal).
        assert (await docket.add(job)(99)).disposition is Disposition.SCHEDULED


async def test_the_byte_limit_names_itself(nats_url: str, docket_name: str) -> None:
    async def job(blob: bytes) -> None: ...

    async with Docket(name=docket_name, url=nats_url, max_queued_bytes=10_000) as docket:
        await docket.add(job)(b"x" * 4_000)
        await docket.add(job)(b"x" * 4_000)
        with pytest.raises(QueueFull) as refused:
            await docket.add(job)(b"x" * 4_000)
        assert refused.value.limit == "max_queued_bytes"
        assert refused.value.maximum == 10_000
        assert 8_000 <= refused.value.current <= 10_000
        assert "max_queued_bytes=10,000" in str(refused.value)
        await docket.clear()


async def test_another_producers_tasks_count(nats_url: str, docket_name: str) -> None:
    async def job() -> None: ...

    async with Docket(name=docket_name, url=nats_url) as first:
        for _ in range(5):
            await first.add(job)()
        async with Docket(name=docket_name, url=nats_url, max_queued_tasks=5) as second:
            with pytest.raises(QueueFull):
                await second.add(job)()
        await first.clear()


async def test_refused_members_of_add_many_fail_with_the_error(
    nats_url: str, docket_name: str
) -> None:
    async def job() -> None: ...

    async with Docket(name=docket_name, url=nats_url, max_queued_tasks=3) as docket:
        executions = await docket.add_many([docket.call(job)() for _ in range(5)])
        dispositions = [e.disposition for e in executions]
        assert dispositions.count(Disposition.SCHEDULED) == 3
        assert dispositions.count(Disposition.FAILED) == 2
        assert all(
            isinstance(e.schedule_exception, QueueFull)
            for e in executions
            if e.disposition is Disposition.FAILED
        )
        await docket.clear()


@pytest.mark.parametrize("setting", ["max_queued_tasks", "max_queued_bytes"])
def test_limits_below_one_are_refused(setting: str) -> None:
    with pytest.raises(InvalidSetting, match=setting):
        Docket(name="x", url="nats://127.0.0.1:4222", **{setting: 0})
