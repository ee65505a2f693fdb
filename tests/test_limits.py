"""Bounded dead letters: a full dead-letter stream drops its oldest letter, never a
task; the work stream stays unbounded (see _connection.work_stream_config)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from nats.js import api

from docket_nats import Docket, Worker

pytestmark = pytest.mark.timeout(60)


def quick_worker(docket: Docket) -> Worker:
    return Worker(
        docket,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


async def test_a_full_dead_letter_stream_drops_the_oldest_letter_never_a_task(
    nats_url: str, docket_name: str
) -> None:
    ran = asyncio.Event()

    async def live() -> None:
        ran.set()

    async with Docket(name=docket_name, url=nats_url, max_dead_letters=3) as docket:
        js = docket.connection.js
        for n in range(5):  # parked in order: bad-0 first
            await js.publish(docket.names.run(f"bad-{n}"), b"\xc1")
            async with quick_worker(docket) as worker:
                await worker.run_until_finished()
        await docket.add(live, key="live")()
        async with quick_worker(docket) as worker:
            await worker.run_until_finished()

        assert ran.is_set()
        assert [letter.key for letter in await docket.dead_letters()] == [
            "bad-2",
            "bad-3",
            "bad-4",
        ]


async def test_an_existing_docket_takes_the_limits_it_is_opened_with(
    nats_url: str, docket_name: str
) -> None:
    async with Docket(name=docket_name, url=nats_url):
        pass
    async with Docket(
        name=docket_name, url=nats_url, max_dead_letters=9, max_dead_letter_bytes=65536
    ) as docket:
        js = docket.connection.js
        work = (await js.stream_info(docket.names.stream)).config
        dead = (await js.stream_info(docket.names.dead_stream)).config
    assert (work.max_msgs, work.max_bytes) == (-1, -1)  # never drops a task
    assert (dead.max_msgs, dead.max_bytes, dead.discard) == (9, 65536, api.DiscardPolicy.OLD)
