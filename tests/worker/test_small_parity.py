"""Smaller docket behaviors, one test each: read-only Execution fields, decoding
a message of an unknown task, retries and failed perpetuals in the recorded
state, Agenda.scatter's checks, assert_no_tasks, and cancelling a run_* call."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from docket_nats import (
    Agenda,
    Disposition,
    Docket,
    Execution,
    ExecutionState,
    Perpetual,
    Retry,
    Worker,
)
from docket_nats.testing import assert_no_tasks

WITHIN = 10.0
LATER = timedelta(hours=1)


def quick_worker(docket: Docket) -> Worker:
    return Worker(
        docket,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


async def test_an_executions_call_cannot_be_reassigned(docket: Docket) -> None:
    execution = await docket.add(greet, when=datetime.now(UTC) + LATER, key="greeting")("ann")
    changes: dict[str, Any] = {
        "function": greet,
        "args": ("bob",),
        "kwargs": {"punctuation": "?"},
        "key": "other",
    }
    for field, value in changes.items():
        with pytest.raises(AttributeError):
            setattr(execution, field, value)
    assert (execution.function, execution.args, execution.key) == (greet, ("ann",), "greeting")
    assert execution.kwargs == {}


async def test_decoding_a_message_of_an_unknown_task_needs_a_fallback(
    nats_url: str, docket_name: str
) -> None:
    async with Docket(name=docket_name, url=nats_url) as producer:
        await producer.add(greet, key="from-elsewhere")("ann", punctuation="?")
        message = await _the_message(producer, "from-elsewhere")
    async with Docket(name=docket_name, url=nats_url) as consumer:  # greet not registered
        with pytest.raises(ValueError, match="'greet' is not registered"):
            await Execution.from_message(consumer, message)

        async def fallback(*args: Any, **kwargs: Any) -> None: ...

        execution = await Execution.from_message(consumer, message, fallback_task=fallback)
        assert execution.function is fallback
        assert execution.function_name == "greet"
        assert (execution.key, execution.args, execution.kwargs) == (
            "from-elsewhere",
            ("ann",),
            {"punctuation": "?"},
        )
        assert execution.state is ExecutionState.QUEUED  # synced by default


async def _the_message(docket: Docket, key: str) -> bytes:
    stored = await docket.connection.js.get_last_msg(
        docket.names.stream, docket.names.any_state(key)
    )
    assert stored.data is not None
    return stored.data


async def test_a_run_that_is_retried_is_not_recorded_as_failed(docket: Docket) -> None:
    attempts: list[int] = []

    async def flaky(retry: Retry = Retry(attempts=3, delay=timedelta(milliseconds=50))) -> str:
        attempts.append(retry.attempt)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "fine"

    execution = await docket.add(flaky, key="flaky")()
    states: list[ExecutionState] = []

    async def watch() -> None:
        async for event in execution.subscribe():
            if event["type"] == "state":
                states.append(event["state"])
                if event["state"] is ExecutionState.COMPLETED:
                    return

    watcher = asyncio.create_task(watch())
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    async with asyncio.timeout(WITHIN):
        await watcher
    assert attempts == [1, 2, 3]
    assert ExecutionState.FAILED not in states, states
    assert await execution.get_result(timeout=timedelta(seconds=WITHIN)) == "fine"


async def test_a_failed_perpetual_run_still_schedules_the_next(docket: Docket) -> None:
    runs = 0

    async def fails(perpetual: Perpetual = Perpetual(every=timedelta(hours=1))) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("this run fails")

    async def next_run_scheduled() -> bool:
        found = await docket.get_execution("chain")
        return (
            found is not None
            and found.state is ExecutionState.SCHEDULED
            and found.when > datetime.now(UTC) + timedelta(minutes=59)
        )

    await docket.add(fails, key="chain")()
    async with quick_worker(docket) as worker:
        run = asyncio.create_task(worker.run_forever())
        async with asyncio.timeout(WITHIN):
            while not await next_run_scheduled():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        worker.stop()
        await run
    assert runs == 1


async def test_scatter_refuses_a_window_that_is_not_positive(docket: Docket) -> None:
    agenda = Agenda()
    agenda.add(greet)("ann")
    for over in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="'over' parameter must be a positive duration"):
            await agenda.scatter(docket, over=over)
    assert (await docket.snapshot()).total_tasks == 0


async def test_scatter_reports_what_it_scheduled_when_one_call_fails(docket: Docket) -> None:
    agenda = Agenda()
    agenda.add(greet, key="first")("ann")
    agenda.add(greet, key="broken")(object())  # msgspec cannot encode it
    with pytest.raises(TypeError) as raised:
        await agenda.scatter(docket, over=LATER)
    # The call before the failure stays scheduled, and the error says so.
    found = await docket.get_execution("first")
    assert found is not None and found.state is ExecutionState.QUEUED  # due at the start
    assert await docket.get_execution("broken") is None
    assert any("1 of 2" in note for note in getattr(raised.value, "__notes__", [])), raised.value


async def test_assert_no_tasks_fails_while_tasks_wait(docket: Docket, worker: Worker) -> None:
    await assert_no_tasks(docket)
    await docket.add(greet, key="now")("ann")
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="later")("bob")
    with pytest.raises(AssertionError, match=r"Expected no tasks, found 2 task\(s\)") as raised:
        await assert_no_tasks(docket)
    assert "key='now'" in str(raised.value) and "key='later'" in str(raised.value)
    await docket.cancel("later")
    await worker.run_until_finished()
    await assert_no_tasks(docket)


@pytest.mark.parametrize("how", ["run_until_finished", "run_at_most"])
async def test_cancelling_a_run_stops_it_promptly_and_keeps_future_tasks(
    docket: Docket, how: str
) -> None:
    ran: list[str] = []

    async def record(name: str) -> None:
        ran.append(name)

    await docket.add(record, key="now")("now")
    later = await docket.add(record, when=datetime.now(UTC) + LATER, key="later")("later")
    assert later.disposition is Disposition.SCHEDULED
    async with quick_worker(docket) as worker:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                if how == "run_until_finished":
                    await worker.run_until_finished()
                else:
                    await worker.run_at_most({"later": 1})
        assert time.monotonic() - began < 3.0
    assert ran == ["now"]
    found = await docket.get_execution("later")
    assert found is not None and found.state is ExecutionState.SCHEDULED
