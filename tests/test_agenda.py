"""Agenda: collect calls, scatter them evenly over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import Agenda, Disposition, Docket, Worker


async def test_scatter_spreads_calls_evenly(docket: Docket, worker: Worker) -> None:
    done: list[int] = []

    async def item(n: int) -> None:
        done.append(n)

    agenda = Agenda()
    for n in range(5):
        agenda.add(item)(n)
    assert len(agenda) == 5
    start = datetime.now(UTC) + timedelta(milliseconds=100)
    executions = await agenda.scatter(docket, over=timedelta(milliseconds=400), start=start)
    assert [e.when for e in executions] == [
        start + timedelta(milliseconds=100) * i for i in range(5)
    ]
    assert all(e.disposition is Disposition.SCHEDULED for e in executions)
    await worker.run_until_finished()
    assert sorted(done) == [0, 1, 2, 3, 4]


async def test_one_call_goes_to_the_middle_and_jitter_stays_after_start(docket: Docket) -> None:
    async def item() -> None: ...

    start = datetime.now(UTC) + timedelta(hours=1)
    agenda = Agenda()
    agenda.add(item)()
    [only] = await agenda.scatter(docket, over=timedelta(minutes=10), start=start)
    assert only.when == start + timedelta(minutes=5)

    agenda.clear()
    for _ in range(20):
        agenda.add(item)()
    executions = await agenda.scatter(
        docket, over=timedelta(minutes=10), start=start, jitter=timedelta(minutes=1)
    )
    assert all(start <= e.when <= start + timedelta(minutes=11) for e in executions)


async def test_stable_keys_make_a_rescatter_idempotent(docket: Docket) -> None:
    async def item(n: int) -> None: ...

    agenda = Agenda()
    for n in range(3):
        agenda.add(item, key=f"item-{n}")(n)
    start = datetime.now(UTC) + timedelta(hours=1)
    first = await agenda.scatter(docket, over=timedelta(minutes=1), start=start)
    again = await agenda.scatter(docket, over=timedelta(minutes=1), start=start)
    assert {e.disposition for e in first} == {Disposition.SCHEDULED}
    assert {e.disposition for e in again} == {Disposition.ALREADY_SCHEDULED}


async def test_unknown_names_and_empty_windows_are_refused(docket: Docket) -> None:
    agenda = Agenda()
    agenda.add("no_such_task")()
    with pytest.raises(KeyError):
        await agenda.scatter(docket, over=timedelta(minutes=1))
    with pytest.raises(ValueError):
        await agenda.scatter(docket, over=timedelta(0))
    assert await Agenda().scatter(docket, over=timedelta(minutes=1)) == []
