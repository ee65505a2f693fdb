"""docket parity: what `execution.subscribe()` yields (state and progress event
dicts, their keys and value formats), and how `Progress` behaves, per docket 0.27."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import Docket, Execution, ExecutionProgress, ExecutionState, Progress, Worker
from docket_nats.execution import ProgressEvent, StateEvent

pytestmark = pytest.mark.timeout(60)

STATE_KEYS = {"type", "key", "state", "when", "worker", "started_at", "completed_at", "error"}
PROGRESS_KEYS = {"type", "key", "current", "total", "message", "updated_at"}

Event = StateEvent | ProgressEvent


def parsed(timestamp: str | None) -> datetime:
    """An ISO 8601 timestamp with its UTC offset, as docket formats them."""
    assert timestamp is not None
    moment = datetime.fromisoformat(timestamp)
    assert moment.utcoffset() == timedelta(0), timestamp
    return moment


async def next_state(events: AsyncIterator[Event]) -> StateEvent:
    """The next state event, skipping progress ones (bounded)."""
    async with asyncio.timeout(10):
        async for event in events:
            if event["type"] == "state":
                return event
    raise AssertionError("the subscription ended")


async def state_until(events: AsyncIterator[Event], wanted: ExecutionState) -> StateEvent:
    while (event := await next_state(events))["state"] is not wanted:
        pass
    return event


async def test_every_state_event_has_docket_keys_and_formats(
    docket: Docket, worker: Worker
) -> None:
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "done"

    later = datetime.now(UTC) + timedelta(hours=1)
    execution = await docket.add(held, later, key="lifecycle")()
    events = execution.subscribe()
    scheduled = await anext(events)
    assert scheduled["type"] == "state" and set(scheduled) == STATE_KEYS
    assert scheduled["key"] == "lifecycle"
    assert scheduled["state"] is ExecutionState.SCHEDULED
    assert parsed(scheduled["when"]) == later
    assert scheduled["worker"] is scheduled["started_at"] is scheduled["completed_at"] is None
    assert scheduled["error"] is None

    await docket.replace(held, datetime.now(UTC), key="lifecycle")()
    queued = await state_until(events, ExecutionState.QUEUED)
    assert set(queued) == STATE_KEYS

    running_worker = asyncio.create_task(worker.run_until_finished())
    running = await state_until(events, ExecutionState.RUNNING)
    assert set(running) == STATE_KEYS
    assert running["worker"] == worker.name
    started = parsed(running["started_at"])
    assert running["completed_at"] is None

    release.set()
    completed = await state_until(events, ExecutionState.COMPLETED)
    await events.aclose()
    await running_worker
    assert set(completed) == STATE_KEYS
    assert completed["worker"] == worker.name
    assert parsed(completed["completed_at"]) >= started
    assert completed["error"] is None


async def test_a_failure_event_carries_the_error_text(docket: Docket, worker: Worker) -> None:
    async def broken() -> None:
        raise ValueError("the disk is full")

    execution = await docket.add(broken)()
    events = execution.subscribe()
    running_worker = asyncio.create_task(worker.run_until_finished())
    failed = await state_until(events, ExecutionState.FAILED)
    await events.aclose()
    await running_worker
    # docket's format: the exception's type name, a colon, its message.
    assert failed["error"] == "ValueError: the disk is full"
    assert failed["completed_at"] is not None


async def test_a_cancel_is_an_event(docket: Docket) -> None:
    async def never() -> None:
        pass

    execution = await docket.add(never, datetime.now(UTC) + timedelta(hours=1), key="gone")()
    events = execution.subscribe()
    assert (await next_state(events))["state"] is ExecutionState.SCHEDULED
    await docket.cancel("gone")
    cancelled = await state_until(events, ExecutionState.CANCELLED)
    await events.aclose()
    assert set(cancelled) == STATE_KEYS and cancelled["key"] == "gone"


async def test_subscribing_to_a_finished_execution_yields_its_end(
    docket: Docket, worker: Worker
) -> None:
    async def quick(progress: Progress = Progress()) -> int:
        await progress.set_total(4)
        await progress.increment(4)
        return 1

    execution = await docket.add(quick, key="over")()
    await worker.run_until_finished()
    events = execution.subscribe()
    async with asyncio.timeout(10):
        first, second = await anext(events), await anext(events)
    await events.aclose()
    assert first["type"] == "state" and first["state"] is ExecutionState.COMPLETED
    assert first["worker"] == worker.name
    parsed(first["started_at"])
    parsed(first["completed_at"])
    # Progress belongs to the run: once it ended there is none.
    assert second == {
        "type": "progress",
        "key": "over",
        "current": None,
        "total": 100,
        "message": None,
        "updated_at": None,
    }


async def test_progress_events_carry_docket_keys_and_start_at_zero_of_a_hundred(
    docket: Docket, worker: Worker
) -> None:
    started = asyncio.Event()
    proceed = asyncio.Event()
    seen_in_task: list[tuple[int | None, int, str | None]] = []

    async def reporting(progress: Progress = Progress()) -> None:
        seen_in_task.append((progress.current, progress.total, progress.message))
        started.set()
        await proceed.wait()
        await progress.set_total(10)
        await progress.increment(3)
        await progress.set_message("three down")
        await progress.set_message(None)

    execution = await docket.add(reporting, key="reporting")()
    running_worker = asyncio.create_task(worker.run_until_finished())
    async with asyncio.timeout(10):
        await started.wait()
    # A running task that reported nothing yet reads as docket's 0 of 100.
    assert seen_in_task == [(0, 100, None)]
    found = await docket.get_execution("reporting")
    assert found is not None
    async with asyncio.timeout(5):  # RUNNING is recorded RUNNING_DELAY after the start
        while found.state is not ExecutionState.RUNNING:
            await asyncio.sleep(0.02)
            await found.sync()
    assert (found.progress.current, found.progress.total) == (0, 100)

    ready = asyncio.Event()
    events = execution.subscribe(ready=ready)
    snapshot = [await anext(events), await anext(events)]
    assert ready.is_set()
    assert snapshot[1] == {
        "type": "progress",
        "key": "reporting",
        "current": 0,
        "total": 100,
        "message": None,
        "updated_at": None,
    }
    proceed.set()
    updates: list[ProgressEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event["type"] == "progress":
                assert set(event) == PROGRESS_KEYS and event["key"] == "reporting"
                parsed(event["updated_at"])
                updates.append(event)
            elif event["state"] is ExecutionState.COMPLETED:
                break
    await events.aclose()
    await running_worker
    assert [(e["current"], e["total"], e["message"]) for e in updates] == [
        (0, 10, None),
        (3, 10, None),
        (3, 10, "three down"),
        (3, 10, None),
    ]


async def test_progress_input_is_validated_with_docket_messages(
    docket: Docket, worker: Worker
) -> None:
    problems: list[str] = []

    async def careless(progress: Progress = Progress()) -> None:
        for bad in (
            lambda: progress.set_total(0),
            lambda: progress.set_total(-5),
            lambda: progress.increment(0),
            lambda: progress.increment(-1),
        ):
            try:
                await bad()
            except ValueError as error:
                problems.append(str(error))
        assert progress.current == 0 and progress.total == 100  # nothing was changed

    await docket.add(careless)()
    await worker.run_until_finished()
    assert problems == [
        "Total must be at least 1",
        "Total must be at least 1",
        "Amount must be at least 1",
        "Amount must be at least 1",
    ]


async def test_progress_is_removed_when_the_run_completes(docket: Docket, worker: Worker) -> None:
    kept: list[Execution] = []

    async def reporting(progress: Progress = Progress()) -> None:
        from docket_nats.dependencies._base import current_execution

        kept.append(current_execution.get())
        await progress.set_total(5)
        await progress.increment(2)
        await progress.set_message("two of five")

    execution = await docket.add(reporting, key="cleared")()
    await worker.run_until_finished()
    await execution.sync()
    assert execution.state is ExecutionState.COMPLETED
    assert (execution.progress.current, execution.progress.total) == (None, 100)
    assert (execution.progress.message, execution.progress.updated_at) == (None, None)
    # The run's own view is reset the same way, as docket's worker does.
    (ran,) = kept
    assert (ran.progress.current, ran.progress.total, ran.progress.message) == (None, 100, None)
    fresh = await ExecutionProgress.create(docket, "cleared")
    assert (fresh.current, fresh.total, fresh.message) == (None, 100, None)


async def test_execution_progress_on_its_own(docket: Docket, worker: Worker) -> None:
    """docket's `ExecutionProgress`: total 1 before any read, `create` reads, and
    `subscribe` yields the updates that follow (no current value first)."""
    unread = ExecutionProgress(docket, "solo")
    assert (unread.current, unread.total, unread.message, unread.updated_at) == (
        None,
        1,
        None,
        None,
    )

    go = asyncio.Event()

    async def reporting(progress: Progress = Progress()) -> None:
        await go.wait()
        await progress.set_total(2)
        await progress.increment(2)

    await docket.add(reporting, key="solo")()
    ready = asyncio.Event()
    watcher = await ExecutionProgress.create(docket, "solo")
    assert (watcher.current, watcher.total) == (None, 100)  # queued: nothing yet
    updates = watcher.subscribe(ready=ready)
    first = asyncio.create_task(anext(updates))
    async with asyncio.timeout(10):
        await ready.wait()
    running_worker = asyncio.create_task(worker.run_until_finished())
    go.set()
    async with asyncio.timeout(10):
        one = await first
        two = await anext(updates)
    await updates.aclose()
    await running_worker
    assert (one["current"], one["total"]) == (0, 2)
    assert (two["current"], two["total"]) == (2, 2)
    assert set(two) == PROGRESS_KEYS
    assert (watcher.current, watcher.total) == (2, 2)
