"""Shared(factory): one value per worker, made once on first use, torn down at stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import pytest

from docket_nats import CurrentDocket, Docket, Shared, TaskArgument, Worker

pytestmark = pytest.mark.timeout(30)


class Pool:
    def __init__(self) -> None:
        self.closed = False


# Module level: `Annotated[...]` under postponed annotations resolves names here.
MADE: list[Pool] = []


async def make_pool() -> Pool:
    await asyncio.sleep(0.05)  # keep the factory busy while other runs ask for it
    MADE.append(Pool())
    return MADE[-1]


async def test_one_value_for_every_run_and_task_on_a_worker(docket: Docket) -> None:
    MADE.clear()
    seen: list[Pool] = []

    async def first(n: int, pool: Pool = Shared(make_pool)) -> None:
        seen.append(pool)

    async def second(pool: Annotated[Pool, Shared(make_pool)]) -> None:
        seen.append(pool)

    for n in range(10):
        await docket.add(first)(n)
    await docket.add(second)()
    async with Worker(docket, concurrency=20) as worker:
        await worker.run_until_finished()
    assert len(MADE) == 1, "eleven runs at once must still make one value"
    assert len(seen) == 11 and all(pool is MADE[0] for pool in seen)


async def test_context_manager_is_torn_down_when_the_worker_stops(docket: Docket) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def pool() -> AsyncIterator[Pool]:
        events.append("open")
        made = Pool()
        yield made
        made.closed = True
        events.append("close")

    def settings() -> Iterator[dict[str, str]]:  # a sync generator works too
        events.append("load settings")
        yield {"region": "eu"}
        events.append("drop settings")

    async def task(p: Pool = Shared(pool), s: dict[str, str] = Shared(settings)) -> None:
        assert not p.closed
        events.append(f"run in {s['region']}")

    await docket.add(task)()
    await docket.add(task)()
    async with Worker(docket) as worker:
        await worker.run_until_finished()
        assert "close" not in events, "a shared value lives as long as its worker"
    # Torn down after the last run, newest first.
    assert events == ["open", "load settings", "run in eu", "run in eu", "drop settings", "close"]


async def test_each_worker_has_its_own_value(docket: Docket) -> None:
    made: list[Pool] = []

    def make_pool() -> Pool:
        made.append(Pool())
        return made[-1]

    async def task(pool: Pool = Shared(make_pool)) -> None:
        pass

    for _ in range(2):
        await docket.add(task)()
        async with Worker(docket) as worker:
            await worker.run_until_finished()
    assert len(made) == 2 and made[0] is not made[1]


async def test_a_worker_entered_again_makes_its_values_anew(docket: Docket) -> None:
    made: list[Pool] = []

    def make_pool() -> Pool:
        made.append(Pool())
        return made[-1]

    async def task(pool: Pool = Shared(make_pool)) -> None:
        assert pool is made[-1]

    worker = Worker(docket)
    for _ in range(2):
        execution = await docket.add(task)()
        async with worker:
            await worker.run_until_finished()
        await execution.get_result(timeout=timedelta(seconds=5))  # no "worker has stopped"
    assert len(made) == 2


async def test_factories_may_use_other_shared_values_and_the_docket(docket: Docket) -> None:
    def dsn(d: Docket = CurrentDocket()) -> str:
        return f"db-for-{d.name}"

    async def connect(address: str = Shared(dsn)) -> str:
        return f"connected to {address}"

    results: list[str] = []

    async def task(connection: str = Shared(connect)) -> None:
        results.append(connection)

    await docket.add(task)()
    async with Worker(docket) as worker:
        await worker.run_until_finished()
    assert results == [f"connected to db-for-{docket.name}"]


async def test_a_factory_reading_a_run_argument_keeps_the_first_runs_view(
    docket: Docket,
) -> None:
    """As in docket: a Shared factory may ask for per-run values; they come from
    the run that made the shared value, and every later run sees that value."""

    def per_customer(customer: str = TaskArgument()) -> str:
        return customer

    seen: list[str] = []

    async def task(customer: str, value: str = Shared(per_customer)) -> None:
        seen.append(value)

    await docket.add(task)("c-1")
    await docket.add(task)("c-2")
    async with Worker(docket, concurrency=1) as worker:
        await worker.run_until_finished()
    assert seen == ["c-1", "c-1"]


async def test_a_failing_factory_caches_nothing_and_is_tried_again(docket: Docket) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database not up yet")
        return "pool"

    outcomes: list[Any] = []

    async def task(pool: str = Shared(flaky)) -> None:
        outcomes.append(pool)

    failed = await docket.add(task)()
    async with Worker(docket, concurrency=1) as worker:
        await worker.run_until_finished()
        with pytest.raises(Exception, match="database not up yet"):
            await failed.get_result(timeout=timedelta(seconds=5))
        await docket.add(task)()
        await docket.add(task)()
        await worker.run_until_finished()
    assert outcomes == ["pool", "pool"]
    assert len(calls) == 2
