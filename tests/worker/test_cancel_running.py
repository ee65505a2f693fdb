"""`docket.cancel(key)` on a task that is already running, as docket users see it.

Each test starts a task on a real worker, waits until the task body is running,
cancels its key, and then checks one thing: the recorded state, the cleanup, the
absence of a retry, the other tasks, the events, a finished key, a task that
swallows the cancellation, and what `get_result()` raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest

from docket_nats import (
    Depends,
    Docket,
    Execution,
    ExecutionCancelled,
    ExecutionState,
    Retry,
    Worker,
)

WITHIN = 10.0  # seconds: the bound of every wait below


def quick_worker(docket: Docket, name: str | None = None) -> Worker:
    return Worker(
        docket,
        name=name,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll server-side state (nothing to await for it) until true, bounded."""
    async with asyncio.timeout(WITHIN):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def state_of(docket: Docket, key: str) -> ExecutionState | None:
    found = await docket.get_execution(key)
    return None if found is None else found.state


@asynccontextmanager
async def running_worker(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """The worker runs until the docket is empty; the block awaits it at the end."""
    run = asyncio.create_task(worker.run_until_finished())
    try:
        yield run
    finally:
        async with asyncio.timeout(WITHIN):
            await run


class Hanging:
    """A task that signals when it has started and then waits for an hour."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.starts = 0

    async def until_started(self) -> None:
        async with asyncio.timeout(WITHIN):
            await self.started.wait()

    async def body(self) -> None:
        self.starts += 1
        self.started.set()
        await asyncio.sleep(3600)


async def test_a_cancelled_run_ends_cancelled_not_failed(docket: Docket) -> None:
    hanging = Hanging()
    execution = await docket.add(hanging.body, key="cancel-me")()
    async with quick_worker(docket, name="the-worker") as worker, running_worker(worker):
        await hanging.until_started()
        await docket.cancel("cancel-me")
    assert await state_of(docket, "cancel-me") is ExecutionState.CANCELLED
    await execution.sync()
    assert execution.state is ExecutionState.CANCELLED
    assert execution.error is None
    # The worker's own record of the stop is the last word: it says who ran it.
    assert execution.worker == "the-worker"
    assert execution.started_at is not None and execution.completed_at is not None
    assert hanging.starts == 1


async def test_a_cancelled_run_cleans_up(docket: Docket) -> None:
    cleanup: list[str] = []
    started = asyncio.Event()

    @asynccontextmanager
    async def connection() -> AsyncIterator[str]:
        cleanup.append("opened")
        try:
            yield "a connection"
        finally:
            cleanup.append("closed")

    async def uses_connection(conn: str = Depends(connection)) -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            cleanup.append("finally")

    await docket.add(uses_connection, key="clean")()
    async with quick_worker(docket) as worker, running_worker(worker):
        async with asyncio.timeout(WITHIN):
            await started.wait()
        await docket.cancel("clean")
    # The body's own `finally` first, then the dependency it was given.
    assert cleanup == ["opened", "finally", "closed"]


async def test_a_cancelled_run_is_not_retried(docket: Docket) -> None:
    starts = 0
    started = asyncio.Event()

    async def retried(retry: Retry = Retry(attempts=5, delay=timedelta(0))) -> None:
        nonlocal starts
        starts += 1
        started.set()
        await asyncio.sleep(3600)

    await docket.add(retried, key="no-retry")()
    async with quick_worker(docket) as worker, running_worker(worker):
        async with asyncio.timeout(WITHIN):
            await started.wait()
        await docket.cancel("no-retry")
    # run_until_finished returned: nothing is scheduled, so no retry follows.
    assert starts == 1
    assert await state_of(docket, "no-retry") is ExecutionState.CANCELLED


async def test_a_cancel_touches_only_the_run_with_that_key(nats_url: str, docket_name: str) -> None:
    started: dict[str, asyncio.Event] = {key: asyncio.Event() for key in ("a", "b", "c")}
    release = asyncio.Event()
    finished: list[str] = []

    async def wait_for_release(name: str) -> str:
        started[name].set()
        await release.wait()
        finished.append(name)
        return name

    async with (
        Docket(name=docket_name, url=nats_url) as first,
        Docket(name=docket_name, url=nats_url) as second,
    ):
        for docket in (first, second):
            docket.register(wait_for_release)
        # One worker takes one task at a time, so each holds some of the three.
        async with (
            Worker(first, name="first", concurrency=2, prefetch=0) as one,
            Worker(second, name="second", concurrency=2, prefetch=0) as two,
        ):
            runs = [asyncio.create_task(w.run_forever()) for w in (one, two)]
            for key in started:
                await first.add(wait_for_release, key=key)(key)
            async with asyncio.timeout(WITHIN):
                await asyncio.gather(*(event.wait() for event in started.values()))
            await first.cancel("b")
            await eventually(lambda: _is(first, "b", ExecutionState.CANCELLED))
            release.set()
            await eventually(lambda: _is(first, "a", ExecutionState.COMPLETED))
            await eventually(lambda: _is(first, "c", ExecutionState.COMPLETED))
            one.stop()
            two.stop()
            async with asyncio.timeout(WITHIN):
                await asyncio.gather(*runs)
        assert sorted(finished) == ["a", "c"]
        assert await (await first.get_execution("a") or _missing()).get_result() == "a"


async def _is(docket: Docket, key: str, state: ExecutionState) -> bool:
    return await state_of(docket, key) is state


def _missing() -> Execution:
    raise AssertionError("the execution is not known")


async def test_cancelling_a_finished_task_changes_nothing(docket: Docket, worker: Worker) -> None:
    async def answer() -> int:
        return 42

    execution = await docket.add(answer, key="done")()
    await worker.run_until_finished()
    assert await state_of(docket, "done") is ExecutionState.COMPLETED

    await docket.cancel("done")
    assert await state_of(docket, "done") is ExecutionState.COMPLETED
    assert await execution.get_result(timeout=timedelta(seconds=WITHIN)) == 42


async def test_a_cancelled_run_publishes_its_state(docket: Docket) -> None:
    hanging = Hanging()
    execution = await docket.add(hanging.body, key="watched")()
    seen: list[Any] = []
    cancelled = asyncio.Event()

    async def watch() -> None:
        async for event in execution.subscribe():
            if event["type"] != "state":
                continue
            seen.append(event["state"])
            if event["state"] is ExecutionState.CANCELLED:
                cancelled.set()

    watcher = asyncio.create_task(watch())
    try:
        async with quick_worker(docket) as worker, running_worker(worker):
            await hanging.until_started()
            await eventually(lambda: _is(docket, "watched", ExecutionState.RUNNING))
            await docket.cancel("watched")
            async with asyncio.timeout(WITHIN):
                await cancelled.wait()
    finally:
        watcher.cancel()
    assert ExecutionState.RUNNING in seen
    assert seen[-1] is ExecutionState.CANCELLED


async def test_a_run_that_swallows_the_cancellation_runs_on(docket: Docket) -> None:
    """docket cancels the run's asyncio task once; a body that catches the
    CancelledError and carries on is not cancelled again, and its run ends as
    the body ends: here, completed with its return value."""
    started = asyncio.Event()
    swallowed = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.sleep(0.05)  # still running after the cancel, not cancelled again
        return "carried on"

    execution = await docket.add(stubborn, key="stubborn")()
    async with quick_worker(docket) as worker, running_worker(worker):
        async with asyncio.timeout(WITHIN):
            await started.wait()
        await docket.cancel("stubborn")
        async with asyncio.timeout(WITHIN):
            await swallowed.wait()
    assert await state_of(docket, "stubborn") is ExecutionState.COMPLETED
    await execution.sync()
    assert execution.state is ExecutionState.COMPLETED
    found = await docket.get_execution("stubborn")
    assert found is not None
    assert await found.get_result(timeout=timedelta(seconds=WITHIN)) == "carried on"


async def test_get_result_of_a_cancelled_run_raises_execution_cancelled(docket: Docket) -> None:
    hanging = Hanging()
    execution = await docket.add(hanging.body, key="awaited")()
    async with quick_worker(docket) as worker, running_worker(worker):
        await hanging.until_started()
        waiting = asyncio.create_task(execution.get_result(timeout=timedelta(seconds=WITHIN)))
        await docket.cancel("awaited")
        with pytest.raises(ExecutionCancelled):
            await waiting
    with pytest.raises(ExecutionCancelled):
        await execution.get_result(timeout=timedelta(seconds=WITHIN))
