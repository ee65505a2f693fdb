"""Cron as docket users rely on it: `next_time()` as the one source of run times
(and the hook tests patch), `cron.cancel()`, and automatic crons waiting for
their first matching time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from unittest.mock import patch
from zoneinfo import ZoneInfo

from docket_nats import Cron, Docket, ExecutionState, Worker
from docket_nats.worker._automatic import AutomaticTasks

WITHIN = 10.0


def in_a_moment() -> datetime:
    return datetime.now(UTC) + timedelta(milliseconds=20)


def test_successive_next_times_increase_and_carry_the_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    cron = Cron("* * * * * *", tz=berlin)
    before = datetime.now(UTC)
    times = [cron.next_time() for _ in range(5)]
    assert all(time.tzinfo is not None for time in times)
    assert all(time.utcoffset() == time.astimezone(berlin).utcoffset() for time in times)
    assert times[0] > before
    # Called at once, one after another: one second apart, none repeated.
    assert all(
        later - earlier == timedelta(seconds=1) for earlier, later in itertools.pairwise(times)
    ), times


async def test_patched_next_time_drives_every_run(docket: Docket, worker: Worker) -> None:
    runs = 0

    async def at_nine(cron: Cron = Cron("0 9 * * *", automatic=False)) -> None:
        nonlocal runs
        runs += 1

    with patch.object(Cron, "next_time", side_effect=in_a_moment) as next_time:
        execution = await docket.add(at_nine)()
        await worker.run_at_most({execution.key: 3})
    assert runs == 3
    assert next_time.call_count == 3  # once after each run, no arguments needed


async def test_a_live_chain_is_not_asked_for_its_first_time_again(docket: Docket) -> None:
    calls = 0

    def next_hour() -> datetime:
        nonlocal calls
        calls += 1
        return datetime.now(UTC) + timedelta(hours=calls)

    async def hourly(cron: Cron = Cron("0 * * * *")) -> None: ...

    docket.register(hourly)
    seeder = AutomaticTasks(docket)
    with patch.object(Cron, "next_time", side_effect=next_hour):
        await seeder.seed()
        await seeder.seed()
        await seeder.seed()
    assert calls == 1


async def test_cron_cancel_ends_the_chain(docket: Docket, worker: Worker) -> None:
    runs = 0

    async def twice(cron: Cron = Cron("* * * * * *", automatic=False)) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            cron.cancel()

    with patch.object(Cron, "next_time", side_effect=in_a_moment):
        await docket.add(twice, key="twice")()
        async with asyncio.timeout(WITHIN):
            await worker.run_until_finished()  # returns: nothing follows the cancel
    assert runs == 2
    found = await docket.get_execution("twice")
    assert found is not None and found.state is ExecutionState.COMPLETED


async def test_an_automatic_cron_waits_for_its_first_matching_time(docket: Docket) -> None:
    runs = 0

    async def new_year(cron: Cron = Cron("0 0 1 1 *")) -> None:
        nonlocal runs
        runs += 1

    docket.register(new_year)
    started = datetime.now(UTC)
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        run = asyncio.create_task(worker.run_forever())
        async with asyncio.timeout(WITHIN):
            while (found := await docket.get_execution("new_year")) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        worker.stop()
        async with asyncio.timeout(WITHIN):
            await run
    assert runs == 0
    assert found.state is ExecutionState.SCHEDULED
    assert found.when == Cron("0 0 1 1 *").next_time(started)
    assert (found.when.month, found.when.day, found.when.hour) == (1, 1, 0)
