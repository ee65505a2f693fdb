"""Priorities end to end: per-call and per-function levels, order on a busy
worker, the low levels' share, and keys, replace, cancel, strikes, schedules and
retries at a level other than NORMAL. Real nats-server; bounded waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.msg import Msg
from nats.js import api

from docket_nats import Docket, MemberOutcome, Priority, Retry, Worker
from docket_nats._subjects import HIGH_LEVEL, LOW_LEVEL, NORMAL_LEVEL, Names
from docket_nats.execution import Disposition
from docket_nats.worker._mailbox import STARVATION_SHARE, Mailbox

pytestmark = pytest.mark.timeout(60)


def quick_worker(docket: Docket, **options: object) -> Worker:
    settings: dict[str, object] = {
        "redelivery_timeout": timedelta(seconds=5),
        "minimum_check_interval": timedelta(milliseconds=20),
        "shutdown_grace": timedelta(seconds=1),
        "schedule_automatic_tasks": False,
    }
    settings.update(options)
    return Worker(docket, **settings)  # pyright: ignore[reportArgumentType]


async def subjects_in_stream(docket: Docket) -> list[str]:
    info = await docket.connection.js.stream_info(docket.names.stream, subjects_filter=">")
    return sorted(info.state.subjects or {})


# -- declaring a priority ---------------------------------------------------------


async def urgent(priority: Priority = Priority.HIGH) -> Priority:
    return priority


async def plain() -> None:
    pass


async def test_the_function_default_and_a_per_call_override_choose_the_subject(
    docket: Docket,
) -> None:
    names = docket.names
    by_default = await docket.add(urgent, key="by-default")()
    overridden = await docket.add(urgent, key="overridden", priority=Priority.LOW)()
    normal = await docket.add(plain, key="normal")()
    assert (by_default.priority, overridden.priority, normal.priority) == (
        Priority.HIGH,
        Priority.LOW,
        Priority.NORMAL,
    )
    assert await subjects_in_stream(docket) == sorted(
        [
            names.run("by-default", HIGH_LEVEL),
            names.run("overridden", LOW_LEVEL),
            names.run("normal"),
        ]
    )
    assert names.run("normal") == f"{names.prefix}.run.normal"  # NORMAL keeps the old subject


async def test_a_task_receives_the_priority_it_was_published_with(docket: Docket) -> None:
    received: dict[str, Priority] = {}

    async def report(name: str, priority: Priority = Priority.HIGH) -> None:
        received[name] = priority

    await docket.add(report)("default")
    await docket.add(report, priority=Priority.LOW)("override")
    await docket.add(report, when=datetime.now(UTC) + timedelta(milliseconds=400))("scheduled")
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert received == {
        "default": Priority.HIGH,
        "override": Priority.LOW,
        "scheduled": Priority.HIGH,
    }


def test_priority_values() -> None:
    assert Priority.LOW < Priority.NORMAL < Priority.HIGH
    assert Priority("high") == Priority.HIGH and repr(Priority.LOW) == "Priority.LOW"
    with pytest.raises(ValueError, match="unknown priority"):
        Priority("urgent")  # pyright: ignore[reportArgumentType]


async def test_two_priority_parameters_are_refused_at_registration(docket: Docket) -> None:
    async def confused(a: Priority = Priority.LOW, b: Priority = Priority.HIGH) -> None: ...

    with pytest.raises(ValueError, match="Priority"):
        docket.register(confused)


# -- order on a busy worker -----------------------------------------------------------


async def test_highs_added_behind_a_low_backlog_start_before_the_remaining_lows(
    docket: Docket,
) -> None:
    started: list[str] = []
    first_low = asyncio.Event()

    async def work(label: str) -> None:
        started.append(label)
        first_low.set()
        await asyncio.sleep(0.005)  # busy: every run slot stays taken

    await docket.add_many(docket.call(work, priority=Priority.LOW)(f"low-{i}") for i in range(100))
    async with quick_worker(docket, concurrency=2) as worker:
        running = asyncio.create_task(worker.run_until_finished())
        await asyncio.wait_for(first_low.wait(), 10)
        before = len(started)
        await docket.add_many(
            docket.call(work, priority=Priority.HIGH)(f"high-{i}") for i in range(10)
        )
        await asyncio.wait_for(running, 30)
    assert len(started) == 110
    last_high = max(index for index, label in enumerate(started) if label.startswith("high"))
    lows_in_between = [label for label in started[before:last_high] if label.startswith("low")]
    # The lows already running or prefetched (concurrency 2 + prefetch 2), the
    # starvation share's one in ten, and a low started while the next highs were
    # on their way; without priorities all ~95 remaining lows would come first.
    assert len(lows_in_between) <= 10, started[: last_high + 1]
    assert sum(label.startswith("low") for label in started[last_high:]) >= 80


async def test_lows_progress_at_their_share_under_a_continuous_high_load(
    docket: Docket,
) -> None:
    started: list[str] = []
    enough = asyncio.Event()

    async def work(label: str) -> None:
        started.append(label)
        if len(started) >= 120:
            enough.set()
        await asyncio.sleep(0.001)

    await docket.add_many(docket.call(work, priority=Priority.LOW)(f"low-{i}") for i in range(40))
    await docket.add_many(
        docket.call(work, priority=Priority.HIGH)(f"high-{i}") for i in range(400)
    )
    # prefetch 4: a few highs always wait, so every start is contested.
    async with quick_worker(docket, concurrency=1, prefetch=4) as worker:
        running = asyncio.create_task(worker.run_forever())
        await asyncio.wait_for(enough.wait(), 30)
        worker.stop()
        await asyncio.wait_for(running, 10)
    first = started[:120]
    lows = sum(label.startswith("low") for label in first)
    # Highs were waiting the whole time (400 queued), yet one start in
    # STARVATION_SHARE went to the lows (give or take the first prefetches).
    assert sum(label.startswith("high") for label in first) < 120
    assert lows >= 120 // STARVATION_SHARE - 2, first
    assert lows <= 120 // STARVATION_SHARE + 6, first


def message(names: Names, key: str, level: int) -> Msg:
    return Msg(_client=None, subject=names.run(key, level))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_the_mailbox_starts_the_highest_level_and_gives_the_oldest_its_share() -> None:
    names = Names("mailbox")
    mailbox = Mailbox(names)
    for i in range(30):
        mailbox.append(message(names, f"low-{i}", LOW_LEVEL))
    for i in range(30):
        mailbox.append(message(names, f"high-{i}", HIGH_LEVEL))
    mailbox.append(message(names, "normal-0", NORMAL_LEVEL))
    order = [Names.key_of(mailbox.pop().subject) for _ in range(30)]
    # Highs first, in arrival order; every tenth contested start is the oldest task.
    assert order[:9] == [f"high-{i}" for i in range(9)]
    assert order[9] == "low-0"
    assert order[19] == "low-1"
    assert order[29] == "low-2"
    assert [key for key in order if key.startswith("high")] == [f"high-{i}" for i in range(27)]
    assert len(mailbox) == 31
    taken = mailbox.take_where(lambda m: Names.key_of(m.subject) == "normal-0")
    assert [Names.key_of(m.subject) for m in taken] == ["normal-0"] and len(mailbox) == 30


# -- keys, replace, cancel, strikes, schedules and retries at other levels -----------


async def test_a_key_is_taken_across_levels(docket: Docket) -> None:
    first = await docket.add(plain, key="shared", priority=Priority.LOW)()
    second = await docket.add(plain, key="shared", priority=Priority.HIGH)()
    third = await docket.add(plain, key="shared")()
    assert first.disposition is Disposition.SCHEDULED
    assert second.disposition is Disposition.ALREADY_SCHEDULED
    assert third.disposition is Disposition.ALREADY_SCHEDULED
    assert await subjects_in_stream(docket) == [docket.names.run("shared", LOW_LEVEL)]


async def test_replace_moves_a_task_between_levels(docket: Docket) -> None:
    received: list[tuple[int, Priority]] = []

    async def job(n: int, priority: Priority = Priority.NORMAL) -> None:
        received.append((n, priority))

    later = datetime.now(UTC) + timedelta(minutes=5)
    await docket.add(job, when=later, key="moving", priority=Priority.LOW)(1)
    await docket.replace(job, when=datetime.now(UTC), key="moving", priority=Priority.HIGH)(2)
    assert await subjects_in_stream(docket) == [docket.names.run("moving", HIGH_LEVEL)]
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert received == [(2, Priority.HIGH)]


async def test_cancel_removes_a_high_task_scheduled_or_queued(docket: Docket) -> None:
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)

    await docket.add(job, key="queued", priority=Priority.HIGH)("queued")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await docket.add(job, when=soon, key="scheduled", priority=Priority.LOW)("scheduled")
    await docket.cancel("queued")
    await docket.cancel("scheduled")
    assert await subjects_in_stream(docket) == []
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert ran == []


async def test_strikes_stop_high_tasks_at_add_and_on_the_worker(docket: Docket) -> None:
    ran: list[int] = []

    async def job(n: int) -> None:
        ran.append(n)

    queued = await docket.add(job, priority=Priority.HIGH)(1)
    assert queued.disposition is Disposition.SCHEDULED
    await docket.strike(job)
    refused = await docket.add(job, priority=Priority.HIGH)(2)
    assert refused.disposition is Disposition.STRUCK
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert ran == []
    await docket.restore(job)
    await docket.add(job, priority=Priority.LOW)(3)
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert ran == [3]


async def test_a_scheduled_high_task_fires_onto_its_level(docket: Docket) -> None:
    ran: list[datetime] = []

    async def job() -> None:
        ran.append(datetime.now(UTC))

    when = datetime.now(UTC) + timedelta(milliseconds=800)
    await docket.add(job, when=when, key="timed", priority=Priority.HIGH)()
    assert await subjects_in_stream(docket) == [docket.names.sched("timed")]
    message = await docket.connection.js.get_last_msg(
        docket.names.stream, docket.names.sched("timed")
    )
    assert message.headers is not None
    assert message.headers["Nats-Schedule-Target"] == docket.names.run("timed", HIGH_LEVEL)
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert len(ran) == 1 and ran[0] >= when


async def test_retries_and_perpetual_successors_keep_their_level(docket: Docket) -> None:
    attempts: list[Priority] = []

    async def flaky(
        priority: Priority = Priority.NORMAL,
        retry: Retry = Retry(attempts=3, delay=timedelta(milliseconds=10)),
    ) -> None:
        attempts.append(priority)
        if len(attempts) < 3:
            raise RuntimeError("again")

    await docket.add(flaky, priority=Priority.LOW)()
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert attempts == [Priority.LOW] * 3


async def test_a_group_callback_runs_at_its_own_priority(docket: Docket) -> None:
    seen: list[Priority] = []
    done = asyncio.Event()

    async def member(priority: Priority = Priority.NORMAL) -> None:
        seen.append(priority)

    async def callback(outcomes: list[MemberOutcome], priority: Priority = Priority.NORMAL) -> None:
        seen.append(priority)
        done.set()

    await docket.group(
        [docket.call(member, priority=Priority.LOW)() for _ in range(2)],
        then=docket.call(callback, priority=Priority.HIGH)(),
    )
    async with quick_worker(docket) as worker:
        await worker.run_until_finished()
    assert done.is_set()
    assert seen == [Priority.LOW, Priority.LOW, Priority.HIGH]


# -- a docket made before priorities ------------------------------------------------------


async def test_a_stream_made_before_priorities_gains_the_level_subjects(
    nats_url: str, docket_name: str
) -> None:
    names = Names(docket_name)
    async with Docket(name=docket_name, url=nats_url) as docket:
        js = docket.connection.js
        await js.delete_stream(names.stream)
        await js.add_stream(  # pyright: ignore[reportUnknownMemberType]
            api.StreamConfig(
                name=names.stream,
                subjects=[names.sched_filter, names.run_filter],
                retention=api.RetentionPolicy.WORK_QUEUE,
                allow_msg_schedules=True,
                allow_msg_ttl=True,
            )
        )
        await docket.add(plain, key="old-style")()  # NORMAL: the old subject works
    async with Docket(name=docket_name, url=nats_url) as docket:
        info = await docket.connection.js.stream_info(names.stream)
        assert set(info.config.subjects or []) == {names.sched_filter, *names.run_filters}
        high = await docket.add(plain, key="new", priority=Priority.HIGH)()
        assert high.disposition is Disposition.SCHEDULED
        async with quick_worker(docket) as worker:
            await worker.run_until_finished()
        assert await subjects_in_stream(docket) == []


async def test_a_snapshot_lists_each_task_at_its_level(docket: Docket) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    await docket.add(plain, when=later, key="future-high", priority=Priority.HIGH)()
    await docket.add(plain, key="queued-low", priority=Priority.LOW)()
    await docket.add(plain, key="queued-normal")()
    snapshot = await docket.snapshot()
    assert {execution.key: execution.priority for execution in snapshot.future} == {
        "future-high": Priority.HIGH,
        "queued-low": Priority.LOW,
        "queued-normal": Priority.NORMAL,
    }
    assert (snapshot.scheduled_count, snapshot.queued_count) == (1, 2)
