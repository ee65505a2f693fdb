"""The core Docket API against a real server: add, keys, replace, cancel, registration.

Each behavior is checked the way a user observes it: what runs, with which
arguments, when, and how often.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from docket_nats import CurrentDocket, Disposition, Docket, Execution, TaskKey, Worker

FAR_FUTURE = timedelta(hours=1)


def soon(milliseconds: int) -> datetime:
    return datetime.now(UTC) + timedelta(milliseconds=milliseconds)


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll a server-side condition (no event exists for it) until true, bounded."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110  (server state: nothing to await)
            await asyncio.sleep(0.01)


async def messages_in_stream(docket: Docket) -> int:
    info = await docket.connection.js.stream_info(docket.names.stream)
    return info.state.messages


def quick_worker(docket: Docket, concurrency: int = 10, prefetch: int | None = None) -> Worker:
    return Worker(
        docket,
        concurrency=concurrency,
        prefetch=prefetch,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


class Blocker:
    """A task that holds a worker slot until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

        async def blocker() -> None:
            self.started.set()
            await self.release.wait()

        self.task = blocker


@asynccontextmanager
async def busy_worker(docket: Docket, prefetch: int) -> AsyncIterator[Blocker]:
    """A concurrency-1 worker, running in the background, whose one slot is taken.

    With prefetch 0 a task added now stays queued in the stream; with prefetch 1
    the worker already holds it (delivered, unacked) but has not started it.
    The worker runs until the docket is empty once the blocker is released.
    """
    blocker = Blocker()
    await docket.add(blocker.task, key="blocker")()
    async with quick_worker(docket, concurrency=1, prefetch=prefetch) as worker:
        running = asyncio.create_task(worker.run_until_finished())
        async with asyncio.timeout(5):
            await blocker.started.wait()
        try:
            yield blocker
        finally:
            blocker.release.set()
            async with asyncio.timeout(10):
                await running


async def wait_until_queued(docket: Docket, prefetch: int) -> None:
    """Wait until the task just added sits where the busy worker's prefetch puts it."""
    js = docket.connection.js

    async def placed() -> bool:
        info = await js.consumer_info(docket.names.stream, docket.names.consumer)
        if prefetch:  # delivered to the worker alongside the blocker, not acked
            return info.num_ack_pending == 2
        return info.num_pending == 1  # still in the stream, undelivered

    await eventually(placed)


async def wait_until_settled(docket: Docket, prefetch: int, replaced: bool) -> None:
    """After a cancel/replace, wait until the busy worker let go of its held copy.

    The notice to workers travels asynchronously; releasing the blocker before it
    arrives would test the race, not the behavior.
    """
    if not prefetch:
        return
    js = docket.connection.js

    async def settled() -> bool:
        info = await js.consumer_info(docket.names.stream, docket.names.consumer)
        if replaced:  # the held slot went to the replacement: nothing undelivered
            return info.num_pending == 0
        return info.num_ack_pending == 1  # only the blocker

    await eventually(settled)


# -- add ------------------------------------------------------------------------


async def test_add_now_runs_with_its_arguments(docket: Docket, worker: Worker) -> None:
    seen: list[tuple[int, str]] = []

    async def record(number: int, label: str = "none") -> None:
        seen.append((number, label))

    execution = await docket.add(record)(7, label="seven")
    assert execution.disposition is Disposition.SCHEDULED
    assert execution.function_name == "record"
    assert execution.args == (7,) and execution.kwargs == {"label": "seven"}
    await worker.run_until_finished()
    assert seen == [(7, "seven")]
    assert await messages_in_stream(docket) == 0


async def test_future_task_runs_at_or_after_its_time(docket: Docket, worker: Worker) -> None:
    ran_at: list[datetime] = []

    async def stamp() -> None:
        ran_at.append(datetime.now(UTC))

    when = soon(400)
    await docket.add(stamp, when=when)()
    # run_until_finished must wait for a scheduled task, not return at once.
    await worker.run_until_finished()
    assert len(ran_at) == 1
    assert when <= ran_at[0] < when + timedelta(seconds=2)


async def test_naive_when_is_local_time(docket: Docket, worker: Worker) -> None:
    ran_at: list[datetime] = []

    async def stamp() -> None:
        ran_at.append(datetime.now(UTC))

    when = datetime.now() + timedelta(milliseconds=300)  # naive: local time
    execution = await docket.add(stamp, when=when)()
    assert execution.when.tzinfo is not None
    await worker.run_until_finished()
    assert ran_at[0] >= when.astimezone(UTC)


async def test_past_when_runs_now(docket: Docket, worker: Worker) -> None:
    ran_at: list[datetime] = []

    async def stamp() -> None:
        ran_at.append(datetime.now(UTC))

    await docket.add(stamp, when=datetime.now(UTC) - timedelta(days=1))()
    # Queued for running at once: nothing waits on a schedule.
    info = await docket.connection.js.stream_info(docket.names.stream, subjects_filter=">")
    subjects = list(info.state.subjects or {})
    assert len(subjects) == 1 and subjects[0].startswith(f"{docket.names.prefix}.run.")
    added = datetime.now(UTC)
    await worker.run_until_finished()
    assert len(ran_at) == 1
    assert ran_at[0] - added < timedelta(seconds=1)


# -- keys -----------------------------------------------------------------------


async def test_a_live_key_is_not_added_twice(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    first = await docket.add(record, when=soon(300), key="only-once")("first")
    second = await docket.add(record, key="only-once")("second")
    assert first.disposition is Disposition.SCHEDULED
    assert second.disposition is Disposition.ALREADY_SCHEDULED
    await worker.run_until_finished()
    assert seen == ["first"]

    # Finished: the key is free again.
    third = await docket.add(record, key="only-once")("third")
    assert third.disposition is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert seen == ["first", "third"]


async def test_a_running_key_is_not_added_again(docket: Docket) -> None:
    seen: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(value: str) -> None:
        seen.append(value)
        started.set()
        await release.wait()

    await docket.add(hold, key="busy")("first")
    async with quick_worker(docket) as worker:
        running = asyncio.create_task(worker.run_until_finished())
        async with asyncio.timeout(5):
            await started.wait()
        duplicate = await docket.add(hold, key="busy")("while-running")
        assert duplicate.disposition is Disposition.ALREADY_SCHEDULED
        release.set()
        async with asyncio.timeout(10):
            await running
    assert seen == ["first"]
    assert (await docket.add(hold, key="busy")("after")).disposition is Disposition.SCHEDULED


KEYS = [
    "with.dots.in.it",
    "with spaces",
    "a/slashed/path",
    "ünïcødé-ключ-鍵-🔑",
    "star*",
    "gt>",
    "*",
    ">",
    "=3D",
    "tab\tand\nnewline",
    "trailing-newline\n",
    "",
    "x" * 200,
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
async def test_unusual_keys_work_end_to_end(docket: Docket, worker: Worker, key: str) -> None:
    seen: list[str] = []

    async def record(key: str = TaskKey()) -> None:
        seen.append(key)

    assert (await docket.add(record, when=soon(60_000), key=key)()).disposition is (
        Disposition.SCHEDULED
    )
    assert (await docket.add(record, key=key)()).disposition is Disposition.ALREADY_SCHEDULED
    await docket.cancel(key)
    assert await messages_in_stream(docket) == 0
    assert (await docket.add(record, key=key)()).disposition is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert seen == [key]


async def test_keys_that_look_alike_stay_distinct(docket: Docket) -> None:
    async def noop() -> None: ...

    # Each would collide under a naive escaping of '.', ' ' or '='.
    keys = ["a.b", "a b", "a=2Eb", "a_b", "a-b", "a=20b", "A.B"]
    for key in keys:
        execution = await docket.add(noop, when=soon(60_000), key=key)()
        assert execution.disposition is Disposition.SCHEDULED, key
    assert await messages_in_stream(docket) == len(keys)


# -- replace ----------------------------------------------------------------------


async def test_replace_a_scheduled_task(docket: Docket, worker: Worker) -> None:
    seen: list[tuple[str, datetime]] = []

    async def record(value: str) -> None:
        seen.append((value, datetime.now(UTC)))

    await docket.add(record, when=datetime.now(UTC) + FAR_FUTURE, key="moving")("old")
    new_when = soon(300)
    replaced = await docket.replace(record, when=new_when, key="moving")("new")
    assert replaced.disposition is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert [value for value, _ in seen] == ["new"]
    assert seen[0][1] >= new_when


async def test_replace_of_an_absent_key_schedules_it(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    replaced = await docket.replace(record, when=datetime.now(UTC), key="fresh")("only")
    assert replaced.disposition is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert seen == ["only"]


@pytest.mark.parametrize("prefetch", [0, 1], ids=["in-stream", "prefetched"])
async def test_replace_a_queued_task_that_has_not_started(docket: Docket, prefetch: int) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    async with busy_worker(docket, prefetch):
        await docket.add(record, key="queued")("old")
        await wait_until_queued(docket, prefetch)
        replaced = await docket.replace(record, when=datetime.now(UTC), key="queued")("new")
        assert replaced.disposition is Disposition.SCHEDULED
        await wait_until_settled(docket, prefetch, replaced=True)
    assert seen == ["new"]


# -- cancel -----------------------------------------------------------------------


async def test_cancel_a_scheduled_task(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    await docket.add(record, when=soon(300), key="doomed")("never")
    await docket.add(record, when=soon(300), key="kept")("kept")
    await docket.cancel("doomed")
    await worker.run_until_finished()
    assert seen == ["kept"]


async def test_cancel_of_an_unknown_key_is_harmless(docket: Docket) -> None:
    await docket.cancel("nothing-here")


@pytest.mark.parametrize("prefetch", [0, 1], ids=["in-stream", "prefetched"])
async def test_cancel_a_queued_task_that_has_not_started(docket: Docket, prefetch: int) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    async with busy_worker(docket, prefetch):
        await docket.add(record, key="queued")("never")
        await wait_until_queued(docket, prefetch)
        await docket.cancel("queued")
        await wait_until_settled(docket, prefetch, replaced=False)
    assert seen == []


async def test_cancel_a_running_task(docket: Docket) -> None:
    started = asyncio.Event()
    outcome: list[str] = []

    async def long_running() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")

    await docket.add(long_running, key="long")()
    async with quick_worker(docket) as worker:
        running = asyncio.create_task(worker.run_until_finished())
        async with asyncio.timeout(5):
            await started.wait()
        await docket.cancel("long")
        async with asyncio.timeout(10):
            await running
    assert outcome == ["cancelled"]
    # Nothing left to retry, and the key is free.
    assert await messages_in_stream(docket) == 0
    assert (await docket.add(long_running, key="long")()).disposition is Disposition.SCHEDULED


# -- registration -------------------------------------------------------------------


async def test_add_by_registered_name(docket: Docket, worker: Worker) -> None:
    seen: list[int] = []

    async def renamed(value: int) -> None:
        seen.append(value)

    docket.register(renamed, names=["alias-one", "alias-two"])
    assert docket.tasks["alias-one"] is renamed and docket.tasks["alias-two"] is renamed
    execution = await docket.add("alias-two")(5)
    assert execution.function_name == "alias-two"
    await worker.run_until_finished()
    assert seen == [5]


async def test_unknown_task_name_raises_key_error(docket: Docket) -> None:
    with pytest.raises(KeyError):
        docket.add("never-registered")
    with pytest.raises(KeyError):
        docket.call("never-registered")
    assert await messages_in_stream(docket) == 0


async def test_adding_a_function_registers_it(docket: Docket) -> None:
    async def implicit() -> None: ...

    await docket.add(implicit, when=soon(60_000))()
    assert docket.tasks["implicit"] is implicit


async def test_builtin_tasks_are_registered_and_run(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    assert {"trace", "fail", "sleep"} <= set(docket.tasks)
    caplog.set_level(logging.INFO)
    await docket.add("trace")("hello from a test")
    await docket.add("sleep")(0.01)
    await worker.run_until_finished()
    assert "hello from a test" in caplog.text


async def test_register_collection(docket: Docket, worker: Worker) -> None:
    import future_annotations_tasks as module

    module.received.clear()
    docket.register_collection("future_annotations_tasks:collection")
    assert docket.tasks["first_collected"] is module.first_collected
    assert docket.tasks["second_collected"] is module.second_collected
    await docket.add("first_collected")(1)
    await docket.add("second_collected")(2)
    await worker.run_until_finished()
    assert sorted(map(str, module.received)) == ["('first', 1)", "('second', 2)"]

    with pytest.raises(ValueError):
        docket.register_collection("no-colon-here")


# -- batches ------------------------------------------------------------------------


async def test_add_many_and_replace_many(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    await docket.add(record, when=datetime.now(UTC) + FAR_FUTURE, key="b")("old-b")
    added = await docket.add_many(
        [
            docket.call(record, key="a")("a"),
            docket.call(record, key="b")("dropped-b"),
            docket.call(record, when=datetime.now(UTC) - timedelta(minutes=1))("c"),
        ]
    )
    assert [e.disposition for e in added] == [
        Disposition.SCHEDULED,
        Disposition.ALREADY_SCHEDULED,
        Disposition.SCHEDULED,
    ]
    assert [e.key for e in added][:2] == ["a", "b"]

    replaced = await docket.replace_many(
        [docket.call(record, when=datetime.now(UTC), key="b")("replaced-b")]
    )
    assert [e.disposition for e in replaced] == [Disposition.SCHEDULED]
    await worker.run_until_finished()
    assert sorted(seen) == ["a", "c", "replaced-b"]


async def test_batches_go_in_chunks(docket: Docket, worker: Worker) -> None:
    seen: list[int] = []

    async def record(value: int) -> None:
        seen.append(value)

    calls = [docket.call(record)(n) for n in range(5)]
    added = await docket.add_many(calls, chunk_size=2)
    assert [e.disposition for e in added] == [Disposition.SCHEDULED] * 5
    await worker.run_until_finished()
    assert sorted(seen) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        await docket.add_many([docket.call(record)(9)], chunk_size=0)
    assert await docket.add_many([]) == []


async def test_schedule_an_execution(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    docket.register(record)
    execution = Execution(docket, record, ("built",), {}, "built-key", datetime.now(UTC), 1)
    await docket.schedule(execution)
    assert execution.disposition is Disposition.SCHEDULED
    again = Execution(docket, record, ("again",), {}, "built-key", datetime.now(UTC), 1)
    await docket.schedule(again)
    assert again.disposition is Disposition.ALREADY_SCHEDULED
    await worker.run_until_finished()
    assert seen == ["built"]


# -- sync functions -------------------------------------------------------------------


async def test_sync_tasks_run_concurrently_in_threads(docket: Docket, worker: Worker) -> None:
    # Both tasks must be inside at once to pass the barrier: run one after the
    # other (or on the event loop) and the barrier times out.
    barrier = threading.Barrier(2, timeout=5)
    threads: list[str] = []
    passed: list[int] = []

    def blocking(number: int) -> None:
        threads.append(threading.current_thread().name)
        barrier.wait()
        passed.append(number)

    await docket.add(blocking)(1)
    await docket.add(blocking)(2)
    await worker.run_until_finished()
    assert sorted(passed) == [1, 2]
    assert threading.main_thread().name not in threads


# -- run_until_finished / run_at_most ------------------------------------------------


async def test_run_at_most_limits_a_self_replacing_task(docket: Docket, worker: Worker) -> None:
    runs: list[str] = []

    async def again(docket: Docket = CurrentDocket(), key: str = TaskKey()) -> None:
        runs.append(key)
        await docket.replace(again, when=soon(20), key=key)()

    await docket.add(again, key="loop")()
    await worker.run_at_most({"loop": 3})
    assert runs == ["loop"] * 3


async def test_run_at_most_zero_never_runs(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    await docket.add(record, key="never")("never")
    await docket.add(record, key="other")("other")
    await worker.run_at_most({"never": 0})
    assert seen == ["other"]
    assert await messages_in_stream(docket) == 0


async def test_run_until_finished_on_an_empty_docket_returns(
    docket: Docket, worker: Worker
) -> None:
    async with asyncio.timeout(2):
        await worker.run_until_finished()
