"""Retry, ExponentialRetry and Timeout on a real server."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import timedelta

import pytest

from docket_nats import Docket, ExponentialRetry, Retry, Timeout, Worker


async def test_retry_until_success_shows_the_attempt(docket: Docket, worker: Worker) -> None:
    attempts: list[int] = []

    async def task(retry: Retry = Retry(attempts=3)) -> None:
        attempts.append(retry.attempt)
        if retry.attempt < 3:
            raise RuntimeError("not yet")

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2, 3]


async def test_retries_stop_after_the_last_attempt(docket: Docket, worker: Worker) -> None:
    attempts: list[int] = []

    async def task(retry: Retry = Retry(attempts=2)) -> None:
        attempts.append(retry.attempt)
        raise RuntimeError("always")

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2]


async def test_unlimited_retries(docket: Docket, worker: Worker) -> None:
    attempts: list[int] = []

    async def task(retry: Retry = Retry.forever()) -> None:
        attempts.append(retry.attempt)
        if retry.attempt < 6:
            raise RuntimeError("not yet")

    assert Retry.forever().attempts is None
    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2, 3, 4, 5, 6]


async def test_retry_waits_its_delay(docket: Docket, worker: Worker) -> None:
    starts: list[float] = []

    async def task(retry: Retry = Retry(attempts=2, delay=timedelta(milliseconds=400))) -> None:
        starts.append(time.monotonic())
        if retry.attempt == 1:
            raise RuntimeError("once")

    await docket.add(task)()
    await worker.run_until_finished()
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.39


async def test_exponential_retry_doubles_up_to_the_maximum(docket: Docket, worker: Worker) -> None:
    delays: list[float] = []
    starts: list[float] = []

    async def task(
        retry: ExponentialRetry = ExponentialRetry(
            attempts=5,
            minimum_delay=timedelta(milliseconds=20),
            maximum_delay=timedelta(milliseconds=100),
        ),
    ) -> None:
        delays.append(retry.delay.total_seconds())
        starts.append(time.monotonic())
        raise RuntimeError("again")

    await docket.add(task)()
    await worker.run_until_finished()
    assert delays == [0.02, 0.04, 0.08, 0.1, 0.1]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= delay - 0.005 for gap, delay in zip(gaps, delays, strict=False))


async def test_retry_after_forces_a_retry(docket: Docket, worker: Worker) -> None:
    attempts: list[int] = []

    async def task(retry: Retry = Retry(attempts=2)) -> None:
        attempts.append(retry.attempt)
        if retry.attempt == 1:
            retry.after(timedelta(milliseconds=50))

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2]


async def test_retries_survive_a_worker_restart_during_the_delay(
    docket: Docket, nats_url: str
) -> None:
    """The retry is a scheduled message on the server, not a timer in a worker."""
    runs: list[tuple[str, int, float]] = []
    first_failed = asyncio.Event()

    async def task(retry: Retry = Retry(attempts=2, delay=timedelta(seconds=1))) -> None:
        runs.append((current_worker_name(), retry.attempt, time.monotonic()))
        if retry.attempt == 1:
            first_failed.set()
            raise RuntimeError("first attempt fails")

    def current_worker_name() -> str:
        from docket_nats.dependencies import current_worker

        return current_worker.get().name

    await docket.add(task)()
    first = Worker(docket, name="first", shutdown_grace=timedelta(seconds=1))
    async with first:
        running = asyncio.create_task(first.run_forever())
        await asyncio.wait_for(first_failed.wait(), 10)
        first.stop()
        await running
    # Nothing of the retry lives in a worker: the server holds it as a schedule.
    info = await docket.connection.js.stream_info(docket.names.stream)
    assert info.state.messages == 1

    # A new worker, on a connection of its own, picks the retry up.
    async with Docket(name=docket.name, url=nats_url) as other:
        other.register(task)
        async with Worker(other, name="second") as second:
            await second.run_until_finished()
    assert [(name, attempt) for name, attempt, _ in runs] == [("first", 1), ("second", 2)]
    assert runs[1][2] - runs[0][2] >= 0.95


async def test_timeout_cancels_the_task_at_the_deadline(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    finished: list[bool] = []
    cancelled = asyncio.Event()

    async def task(deadline: Timeout = Timeout(timedelta(milliseconds=200))) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finished.append(True)

    caplog.set_level(logging.WARNING, logger="docket_nats")
    await docket.add(task, key="slow")()
    started = time.monotonic()
    await worker.run_until_finished()
    assert time.monotonic() - started < 5
    assert cancelled.is_set() and finished == []
    assert any("exceeded its timeout" in record.getMessage() for record in caplog.records)


async def test_timeout_can_be_extended(docket: Docket, worker: Worker) -> None:
    finished: list[float] = []

    async def task(deadline: Timeout = Timeout(timedelta(milliseconds=200))) -> None:
        await asyncio.sleep(0.1)
        deadline.extend(timedelta(milliseconds=300))
        assert deadline.remaining() > timedelta(milliseconds=300)
        await asyncio.sleep(0.25)  # past the base deadline, within the extended one
        finished.append(deadline.remaining().total_seconds())

    await docket.add(task)()
    await worker.run_until_finished()
    assert len(finished) == 1 and finished[0] > 0


async def test_timeout_composes_with_retry(docket: Docket, worker: Worker) -> None:
    attempts: list[tuple[int, bool]] = []

    async def task(
        retry: Retry = Retry(attempts=3),
        deadline: Timeout = Timeout(timedelta(milliseconds=150)),
    ) -> None:
        if retry.attempt == 1:
            attempts.append((retry.attempt, False))
            await asyncio.sleep(10)  # times out; the retry runs it again
        attempts.append((retry.attempt, True))

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [(1, False), (2, True)]
