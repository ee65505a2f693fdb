"""`Docket.retry_dead_letter` and `Docket.purge_dead_letters`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from docket_nats import Docket, Worker
from docket_nats.execution import UnknownTask

ran: list[str] = []


async def parcel(label: str, weight: int = 1) -> None:
    ran.append(f"{label}:{weight}")


async def park(nats_url: str, docket_name: str) -> None:
    """Run the docket with a worker that knows no task: everything is parked."""
    async with (
        Docket(name=docket_name, url=nats_url) as unaware,
        Worker(unaware, minimum_check_interval=timedelta(milliseconds=20)) as worker,
    ):
        await worker.run_until_finished()


async def test_a_retried_letter_runs_with_its_original_arguments(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    ran.clear()
    await docket.add(parcel, key="p-1")("box", weight=3)
    await docket.add(parcel, key="p-2")("crate")
    await park(nats_url, docket_name)
    assert sorted(letter.key for letter in await docket.dead_letters()) == ["p-1", "p-2"]

    execution = await docket.retry_dead_letter("p-1")
    assert execution.disposition.value == "scheduled" and execution.attempt == 1
    assert [letter.key for letter in await docket.dead_letters()] == ["p-2"]
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        await worker.run_until_finished()
    assert ran == ["box:3"]

    with pytest.raises(LookupError, match="p-1"):
        await docket.retry_dead_letter("p-1")
    assert await docket.purge_dead_letters() == 1
    assert await docket.dead_letters() == []


async def test_a_letter_of_an_unknown_task_stays_parked(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    await docket.add(parcel, key="p-3")("bag")
    await park(nats_url, docket_name)
    async with Docket(name=docket_name, url=nats_url) as stranger:  # parcel not registered
        with pytest.raises(UnknownTask):
            await stranger.retry_dead_letter("p-3")
        assert [letter.key for letter in await stranger.dead_letters()] == ["p-3"]
        assert await stranger.purge_dead_letters("p-3") == 1
        assert await stranger.purge_dead_letters("p-3") == 0
