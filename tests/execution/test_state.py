"""Execution state and results: every transition, get_result's values,
exceptions, cancellations and timeouts, expiry, and a crashed worker's run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import worker_process
from worker_process import Probe, spawn

from docket_nats import Debounce, Docket, Execution, ExecutionCancelled, ExecutionState, Worker
from docket_nats._results import ResultUnavailable, TaskFailed

pytestmark = pytest.mark.timeout(60)


@dataclass
class Point:
    x: int
    y: int


async def make_point(x: int) -> Point:
    return Point(x, x * 2)


async def add_numbers(a: int, b: int) -> int:
    return a + b


class CustomError(Exception):
    pass


async def explode(message: str) -> None:
    raise CustomError(message)


async def give_object() -> object:
    return object()


async def test_unknown_key_has_no_execution(docket: Docket) -> None:
    assert await docket.get_execution("nothing-here") is None


async def test_future_task_is_scheduled_and_immediate_task_is_queued(docket: Docket) -> None:
    later = await docket.add(add_numbers, datetime.now(UTC) + timedelta(hours=1), key="later")(1, 2)
    now = await docket.add(add_numbers, key="now")(3, 4)
    assert later.state is ExecutionState.SCHEDULED
    assert now.state is ExecutionState.QUEUED

    found_later = await docket.get_execution("later")
    found_now = await docket.get_execution("now")
    assert found_later is not None and found_now is not None
    assert found_later.state is ExecutionState.SCHEDULED
    assert found_now.state is ExecutionState.QUEUED
    assert found_now.args == (3, 4) and found_now.function_name == "add_numbers"
    assert abs((found_later.when - later.when).total_seconds()) < 0.001

    await now.sync()
    assert now.state is ExecutionState.QUEUED


async def test_completed_task_returns_its_value(docket: Docket, worker: Worker) -> None:
    execution = await docket.add(add_numbers)(20, 22)
    await worker.run_until_finished()
    assert await execution.get_result(timeout=timedelta(seconds=5)) == 42
    assert execution.state is ExecutionState.COMPLETED
    assert execution.worker == worker.name
    assert execution.started_at is not None and execution.completed_at is not None
    assert execution.started_at <= execution.completed_at

    found = await docket.get_execution(execution.key)
    assert found is not None and found.state is ExecutionState.COMPLETED
    assert await found.get_result() == 42


async def test_result_is_decoded_with_the_return_annotation(docket: Docket, worker: Worker) -> None:
    execution = await docket.add(make_point)(3)
    await worker.run_until_finished()
    assert await execution.get_result(timeout=timedelta(seconds=5)) == Point(3, 6)


async def test_get_result_waits_for_a_running_worker(docket: Docket, worker: Worker) -> None:
    execution = await docket.add(add_numbers)(1, 1)
    waiting = asyncio.create_task(execution.get_result(timeout=timedelta(seconds=10)))
    running = asyncio.create_task(worker.run_until_finished())
    assert await waiting == 2
    await running


async def test_failed_task_reraises_its_exception(docket: Docket, worker: Worker) -> None:
    execution = await docket.add(explode)("boom")
    await worker.run_until_finished()
    with pytest.raises(CustomError, match="boom"):
        await execution.get_result(timeout=timedelta(seconds=5))
    assert execution.state is ExecutionState.FAILED
    assert execution.error == "CustomError: boom"


async def test_exception_of_an_unimportable_type_is_named(docket: Docket, worker: Worker) -> None:
    async def local_failure() -> None:
        class Hidden(Exception):
            pass

        raise Hidden("hidden one")

    execution = await docket.add(local_failure)()
    await worker.run_until_finished()
    with pytest.raises(TaskFailed, match="Hidden: hidden one"):
        await execution.get_result(timeout=timedelta(seconds=5))


async def test_a_value_that_cannot_be_stored_does_not_fail_the_task(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    execution = await docket.add(give_object)()
    await worker.run_until_finished()
    with pytest.raises(ResultUnavailable, match="cannot be stored"):
        await execution.get_result(timeout=timedelta(seconds=5))
    assert execution.state is ExecutionState.COMPLETED
    assert "cannot be stored" in caplog.text


async def test_get_result_times_out(docket: Docket) -> None:
    execution = await docket.add(add_numbers, datetime.now(UTC) + timedelta(hours=1))(1, 2)
    with pytest.raises(TimeoutError):
        await execution.get_result(timeout=timedelta(milliseconds=200))
    with pytest.raises(ValueError):
        await execution.get_result(timeout=timedelta(seconds=1), deadline=datetime.now(UTC))


async def test_cancelled_task_raises_execution_cancelled(docket: Docket) -> None:
    execution = await docket.add(add_numbers, datetime.now(UTC) + timedelta(hours=1))(1, 2)
    waiting = asyncio.create_task(execution.get_result(timeout=timedelta(seconds=10)))
    await docket.cancel(execution.key)
    with pytest.raises(ExecutionCancelled):
        await waiting
    found = await docket.get_execution(execution.key)
    assert found is not None and found.state is ExecutionState.CANCELLED
    # The key can be used again, and then shows the new task.
    await docket.add(add_numbers, key=execution.key)(5, 6)
    found = await docket.get_execution(execution.key)
    assert found is not None and found.state is ExecutionState.QUEUED


async def test_running_state_is_visible_while_the_task_runs(docket: Docket, worker: Worker) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    execution = await docket.add(slow)()
    running = asyncio.create_task(worker.run_until_finished())
    await started.wait()
    # The RUNNING write is a publish without an ack: poll briefly for it.
    async with asyncio.timeout(5):
        while True:
            await execution.sync()
            if execution.state is ExecutionState.RUNNING:
                break
            await asyncio.sleep(0.01)
    assert execution.worker == worker.name
    release.set()
    assert await execution.get_result(timeout=timedelta(seconds=5)) == "done"
    await running


async def test_subscribe_sees_every_transition(docket: Docket, worker: Worker) -> None:
    release = asyncio.Event()

    async def held(a: int) -> int:
        await release.wait()
        return a

    execution = await docket.add(held, datetime.now(UTC) + timedelta(hours=1), key="t")(2)
    events = execution.subscribe()
    first = await anext(events)
    assert first["type"] == "state" and first["state"] is ExecutionState.SCHEDULED
    assert (await anext(events))["type"] == "progress"
    await docket.replace(held, datetime.now(UTC), key="t")(2)
    running = asyncio.create_task(worker.run_until_finished())
    seen: list[ExecutionState] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event["type"] == "state":
                seen.append(event["state"])
                if event["state"] is ExecutionState.RUNNING:
                    release.set()
                if event["state"] is ExecutionState.COMPLETED:
                    break
    await events.aclose()
    await running
    assert seen[-2:] == [ExecutionState.RUNNING, ExecutionState.COMPLETED]
    assert ExecutionState.QUEUED in seen


async def test_a_short_run_is_recorded_once_when_it_ends(docket: Docket, worker: Worker) -> None:
    """Runs shorter than RUNNING_DELAY skip the RUNNING write (one publish per task)."""
    execution = await docket.add(add_numbers)(1, 2)
    events = execution.subscribe()
    first = await anext(events)
    assert first["type"] == "state" and first["state"] is ExecutionState.QUEUED
    await anext(events)
    running = asyncio.create_task(worker.run_until_finished())
    async with asyncio.timeout(10):
        event = await anext(events)
    await events.aclose()
    await running
    assert event["type"] == "state" and event["state"] is ExecutionState.COMPLETED


async def debounced(debounce: Debounce = Debounce(timedelta(milliseconds=300))) -> None:
    pass


async def test_a_postponed_run_is_never_recorded_running(docket: Docket, worker: Worker) -> None:
    """Debounce postpones the first delivery: that attempt never ran, so no RUNNING
    record may appear between QUEUED and the real run's COMPLETED."""
    execution = await docket.add(debounced, key="quiet")()
    events = execution.subscribe()
    assert (await anext(events))["type"] == "state"
    await anext(events)  # the progress snapshot
    running = asyncio.create_task(worker.run_until_finished())
    seen: list[ExecutionState] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event["type"] == "state":
                seen.append(event["state"])
                if event["state"] is ExecutionState.COMPLETED:
                    break
    await events.aclose()
    await running
    assert ExecutionState.RUNNING not in seen, seen


async def test_records_expire_after_the_execution_ttl(nats_url: str, docket_name: str) -> None:
    async with Docket(name=docket_name, url=nats_url, execution_ttl=timedelta(seconds=1)) as docket:
        async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
            execution = await docket.add(add_numbers)(1, 2)
            await worker.run_until_finished()
            assert await execution.get_result(timeout=timedelta(seconds=5)) == 3
            # Expiry is the server's doing: poll for it, bounded.
            async with asyncio.timeout(5):
                while await docket.get_execution(execution.key) is not None:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)


async def test_a_retried_failure_shows_the_retry_not_the_failure(
    docket: Docket, worker: Worker
) -> None:
    from docket_nats import Retry

    attempts: list[int] = []

    async def flaky(retry: Retry = Retry(attempts=2)) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time")
        return "second time"

    execution = await docket.add(flaky)()
    await worker.run_until_finished()
    assert await execution.get_result(timeout=timedelta(seconds=5)) == "second time"


async def test_a_crashed_workers_run_is_overwritten_by_its_redelivery(
    nats_url: str, docket_name: str, tmp_path: Path
) -> None:
    async with Docket(name=docket_name, url=nats_url) as docket:
        for function in worker_process.tasks:
            docket.register(function)
        probe = await Probe.start(docket)
        process = await spawn(
            tmp_path / "worker.log", nats_url, docket_name, "--redelivery-timeout", "1"
        )
        try:
            execution: Execution = await docket.add(worker_process.hold, key="crash")("crash", 1.0)
            await probe.wait_event("started", "crash")
            async with asyncio.timeout(5):
                while execution.state is not ExecutionState.RUNNING:
                    await execution.sync()
                    await asyncio.sleep(0.01)
            dead_worker = execution.worker
            assert dead_worker is not None and dead_worker.endswith(f"#{process.pid}")
        finally:
            await process.kill()
        async with Worker(
            docket,
            name="survivor",
            redelivery_timeout=timedelta(seconds=1),
            minimum_check_interval=timedelta(milliseconds=20),
        ) as worker:
            running = asyncio.create_task(worker.run_forever())
            try:
                assert await execution.get_result(timeout=timedelta(seconds=20)) is None
            finally:
                worker.stop()
                await running
        assert execution.state is ExecutionState.COMPLETED
        assert execution.worker == "survivor"
        assert execution.message is None  # the caller's copy; the worker's had num_delivered 2


async def test_a_cancel_is_readable_as_soon_as_it_returns(docket: Docket) -> None:
    """cancel() returns once its CANCELLED record is stored, not merely sent."""
    later = datetime.now(UTC) + timedelta(hours=1)
    keys = [(await docket.add(add_numbers, later)(1, n)).key for n in range(20)]
    for key in keys:
        await docket.cancel(key)
        found = await docket.get_execution(key)
        assert found is not None and found.state is ExecutionState.CANCELLED, key
