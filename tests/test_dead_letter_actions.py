"""`Docket.retry_dead_letter` and `Docket.purge_dead_letters`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from docket_nats import Docket, Execution, Worker
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


async def test_a_letter_parked_again_while_retrying_is_kept(
    docket: Docket, nats_url: str, docket_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that still cannot run the task parks it again under the same key
    between the retry's publish and its removal of the letter it read: only the
    letter that was read goes, the new one stays."""
    await docket.add(parcel, key="p-4")("sack")
    await park(nats_url, docket_name)
    [first] = await docket.dead_letters()
    publish = docket._publish  # pyright: ignore[reportPrivateUsage]

    async def publish_then_park(*args: Any, **kwargs: Any) -> Execution:
        execution = await publish(*args, **kwargs)
        await park(nats_url, docket_name)  # in the window: parked again
        return execution

    monkeypatch.setattr(docket, "_publish", publish_then_park)
    await docket.retry_dead_letter("p-4")
    [again] = await docket.dead_letters()
    assert again.key == "p-4" and again.parked_at > first.parked_at


async def test_a_purge_up_to_a_letter_keeps_the_later_ones(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    """What a caller that showed a letter removes: that one, not one parked since."""
    await docket.add(parcel, key="p-5")("tin")
    await park(nats_url, docket_name)
    [shown] = await docket.dead_letters()
    await docket.add(parcel, key="p-5")("tin")  # parked again under the same key
    await park(nats_url, docket_name)
    assert await docket.purge_dead_letters("p-5", up_to_sequence=shown.sequence) == 1
    [later] = await docket.dead_letters()
    assert later.sequence > shown.sequence > 0
    assert await docket.purge_dead_letters("p-5", up_to_sequence=shown.sequence) == 0
    assert await docket.purge_dead_letters(up_to_sequence=later.sequence) == 1
