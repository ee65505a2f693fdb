"""Groups: members added together, a callback once after all of them ended."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

import tests.worker_process as worker_process
from docket_nats import (
    Cooldown,
    Disposition,
    Docket,
    ExecutionState,
    Group,
    GroupProgress,
    MemberOutcome,
    Retry,
    Worker,
)
from docket_nats._groups import GroupInfo, claim_key, group_store
from tests.worker_process import Probe, spawn

# What the callbacks of the in-process tests saw, per test (keyed by a label).
seen: dict[str, list[list[MemberOutcome]]] = {}
arrived = asyncio.Event()


async def square(n: int) -> int:
    return n * n


async def flaky(n: int, retry: Retry = Retry(attempts=2)) -> int:
    raise ValueError(f"no luck with {n}")


async def slow(n: int) -> None:
    await asyncio.sleep(60)


async def plus_one(outcomes: list[MemberOutcome]) -> int:
    return outcomes[0].result + 1


async def times(factor: int, outcomes: list[MemberOutcome]) -> int:
    return outcomes[0].result * factor


async def collect(label: str, outcomes: list[MemberOutcome]) -> None:
    seen.setdefault(label, []).append(outcomes)
    arrived.set()


async def callback_calls(
    label: str, count: int = 1, within: float = 30
) -> list[list[MemberOutcome]]:
    async with asyncio.timeout(within):
        while len(seen.get(label, [])) < count:
            arrived.clear()
            await arrived.wait()
    return seen[label]


async def work_stream_messages(docket: Docket) -> int:
    info = await docket.connection.js.stream_info(docket.names.stream)
    return info.state.messages


@pytest.fixture
async def busy_worker(docket: Docket) -> AsyncIterator[Worker]:
    async with Worker(
        docket,
        concurrency=10,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
        schedule_automatic_tasks=False,
    ) as worker:
        run = asyncio.create_task(worker.run_forever())
        yield worker
        worker.stop()
        await run


async def test_a_thousand_members_one_callback_with_every_outcome_in_order(
    docket: Docket, busy_worker: Worker
) -> None:
    group = await docket.group(
        [docket.call(square)(n) for n in range(1000)],
        then=docket.call(collect)("thousand"),
        key="thousand",
    )
    assert group.disposition is Disposition.SCHEDULED
    calls = await callback_calls("thousand")
    [outcomes] = calls
    assert [outcome.result for outcome in outcomes] == [n * n for n in range(1000)]
    assert [outcome.key for outcome in outcomes] == group.member_keys
    assert all(outcome.state is ExecutionState.COMPLETED for outcome in outcomes)
    assert await group.progress() == GroupProgress(done=1000, failed=0, total=1000)
    # Once: the callback's message is gone (acked) and it was claimed by that one message.
    store = await group_store(docket.context)
    claim = await store.kv.get(claim_key("thousand", 0))
    assert claim.value is not None and int(claim.value) > 0
    async with asyncio.timeout(10):
        while await work_stream_messages(docket):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert len(seen["thousand"]) == 1


async def test_members_spread_over_two_workers_report_to_one_callback(
    docket: Docket, busy_worker: Worker
) -> None:
    # The worker that completes the group has only its own outcome batches at
    # hand: it reads the other worker's from the store.
    async with Worker(docket, concurrency=10, schedule_automatic_tasks=False, prefetch=0) as other:
        run = asyncio.create_task(other.run_forever())
        await docket.group(
            [docket.call(square)(n) for n in range(300)], then=docket.call(collect)("two")
        )
        [outcomes] = await callback_calls("two")
        other.stop()
        await run
    assert [outcome.result for outcome in outcomes] == [n * n for n in range(300)]


async def test_a_member_failing_after_its_retries_is_reported_failed(
    docket: Docket, busy_worker: Worker
) -> None:
    group = await docket.group(
        [docket.call(square)(2), docket.call(flaky)(3), docket.call(square)(4)],
        then=docket.call(collect)("failing"),
    )
    [outcomes] = await callback_calls("failing")
    assert [outcome.state for outcome in outcomes] == [
        ExecutionState.COMPLETED,
        ExecutionState.FAILED,
        ExecutionState.COMPLETED,
    ]
    assert outcomes[1].error == "ValueError: no luck with 3"
    assert [outcomes[0].result, outcomes[2].result] == [4, 16]
    progress = await group.progress()
    assert (progress.done, progress.failed, progress.total) == (3, 1, 3)


async def test_a_group_key_is_refused_while_the_group_exists(
    docket: Docket, busy_worker: Worker
) -> None:
    first = await docket.group([docket.call(square)(1)], key="once")
    second = await docket.group([docket.call(square)(2), docket.call(square)(3)], key="once")
    assert first.disposition is Disposition.SCHEDULED
    assert second.disposition is Disposition.ALREADY_SCHEDULED
    assert (await second.progress()).total == 1  # the first group's, untouched
    assert second.member_keys == []  # the refused calls' keys were never added
    assert (await Group.of(docket, "once").progress()).total == 1
    with pytest.raises(KeyError):
        await Group.of(docket, "never-added").progress()


async def test_a_callback_without_an_outcomes_parameter_is_refused(docket: Docket) -> None:
    with pytest.raises(TypeError, match="outcomes"):
        await docket.group([docket.call(square)(1)], then=docket.call(square)(2))


async def test_a_member_whose_key_is_taken_ends_at_once_as_failed(
    docket: Docket, busy_worker: Worker
) -> None:
    await docket.add(slow, key="taken")(0)
    group = await docket.group(
        [docket.call(square, key="taken")(5), docket.call(square)(6)],
        then=docket.call(collect)("taken"),
    )
    [outcomes] = await callback_calls("taken")
    assert outcomes[0].state is ExecutionState.FAILED
    assert outcomes[0].error == "not added: already_scheduled"
    assert outcomes[1].result == 36
    assert (await group.progress()).failed == 1
    await docket.cancel("taken")


async def test_cancelling_a_group_mid_flight(docket: Docket) -> None:
    async with Worker(
        docket,
        concurrency=2,
        prefetch=0,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        schedule_automatic_tasks=False,
    ) as worker:
        run = asyncio.create_task(worker.run_forever())
        group = await docket.group(
            [docket.call(square)(1)] + [docket.call(slow)(n) for n in range(5)],
            then=docket.call(collect)("cancel"),
        )
        # Until the quick member has ended and two slow ones are running.
        async with asyncio.timeout(15):
            while (await group.progress()).done < 1 or len(await _running(docket)) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await group.cancel()
        [outcomes] = await callback_calls("cancel")
        worker.stop()
        await run
    assert outcomes[0].state is ExecutionState.COMPLETED
    assert [outcome.state for outcome in outcomes[1:]] == [ExecutionState.CANCELLED] * 5
    assert (await group.progress()).done == 6
    assert await work_stream_messages(docket) == 0


async def test_groups_in_flight_show_in_the_snapshot_and_the_cli(
    docket: Docket, nats_url: str, busy_worker: Worker
) -> None:
    assert (await docket.snapshot()).groups == []  # no group yet: no bucket either
    group = await docket.group(
        [docket.call(square)(1), docket.call(slow)(2)],
        then=docket.call(collect)("shown"),
        key="shown",
    )
    async with asyncio.timeout(15):
        while (await group.progress()).done < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert (await docket.snapshot()).groups == [GroupInfo("shown", done=1, failed=0, total=2)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", "snapshot", "--url", nats_url,
        "--docket", docket.name, "--format", "json",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert json.loads(out)["groups"] == [{"key": "shown", "done": 1, "failed": 0, "total": 2}]
    await group.cancel()
    await callback_calls("shown")
    assert (await docket.snapshot()).groups == []


async def _running(docket: Docket) -> list[str]:
    snapshot = await docket.snapshot()
    return [execution.key for execution in snapshot.running]


async def unknown_to_the_worker(n: int) -> int:
    return n


async def cooled(n: int, cooldown: Cooldown = Cooldown(timedelta(minutes=1))) -> int:
    return n


async def test_members_that_never_run_still_end_in_their_group(
    docket: Docket, nats_url: str, busy_worker: Worker
) -> None:
    # One member is parked (a task the worker does not know), one is dropped by its
    # Cooldown: both end as far as the group goes, and the callback runs.
    docket.register(cooled)
    docket.register(collect)
    async with Docket(name=docket.name, url=nats_url) as producer:
        await producer.group(
            [
                producer.call(unknown_to_the_worker)(1),
                producer.call(cooled)(2),
                producer.call(cooled)(3),
            ],
            then=producer.call(collect)("never-run"),
        )
    [outcomes] = await callback_calls("never-run")
    assert outcomes[0].state is ExecutionState.FAILED
    assert "unknown task 'unknown_to_the_worker'" in (outcomes[0].error or "")
    states = sorted(outcome.state.value for outcome in outcomes[1:])
    assert states == ["cancelled", "completed"]
    dropped = next(outcome for outcome in outcomes[1:] if not outcome.ok)
    assert (dropped.error or "").startswith("dropped by")


async def test_an_empty_group_runs_its_callback_at_once(
    docket: Docket, busy_worker: Worker
) -> None:
    await docket.group([], then=docket.call(collect)("empty"))
    assert await callback_calls("empty") == [[]]


async def test_a_chain_hands_each_result_to_the_next_step(
    docket: Docket, busy_worker: Worker
) -> None:
    groups = await docket.chain(
        docket.call(square)(3),
        docket.call(plus_one)(),
        docket.call(plus_one)(),
        docket.call(collect)("chain"),
        key="chain",
    )
    assert [group.key for group in groups] == ["chain.1", "chain.2", "chain.3"]
    [outcomes] = await callback_calls("chain")
    assert [(outcome.state, outcome.result) for outcome in outcomes] == [
        (ExecutionState.COMPLETED, 11)
    ]
    assert [(await group.progress()).finished for group in groups] == [True] * 3
    again = await docket.chain(docket.call(square)(1), docket.call(plus_one)(), key="chain")
    assert again[0].disposition is Disposition.ALREADY_SCHEDULED


async def test_a_chain_step_that_is_a_group(docket: Docket, busy_worker: Worker) -> None:
    await docket.chain(
        docket.call(square)(2),
        [docket.call(times)(factor) for factor in (1, 2, 3)],
        docket.call(collect)("fan"),
    )
    [outcomes] = await callback_calls("fan")
    assert [outcome.result for outcome in outcomes] == [4, 8, 12]


async def test_a_chain_step_without_an_outcomes_parameter_is_refused(docket: Docket) -> None:
    with pytest.raises(TypeError, match="outcomes"):
        await docket.chain(docket.call(square)(1), docket.call(square)(2))


# -- crashes: workers in processes of their own -------------------------------------


async def test_a_worker_dying_after_publishing_the_callback_before_its_ack(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    # The worker that completes the group publishes the callback and dies (os._exit:
    # no ack, no clean-up, as kill -9) before acking the last member. The member is
    # redelivered to a second worker, which counts it once and publishes again: the
    # server refuses that copy, and the callback runs exactly once.
    docket.register(worker_process.note)
    docket.register(worker_process.quick_settle)
    log = tmp_path / "callback.log"
    dying = await spawn(
        tmp_path / "dying.log", nats_url, docket.name, "--exit-after-publishing-a-callback"
    )
    try:
        group = await docket.group(
            [docket.call(worker_process.note)(f"m{n}") for n in range(3)],
            then=docket.call(worker_process.quick_settle)(str(log)),
        )
        assert await dying.wait_exit(within=20) == 9
        survivor = await spawn(tmp_path / "survivor.log", nats_url, docket.name)
        try:
            async with asyncio.timeout(20):
                while not log.exists() or (await group.progress()).done < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            # The dead worker's member comes back after the redelivery timeout (2 s)
            # and is acked by the survivor: wait until the work stream is empty.
            async with asyncio.timeout(20):
                while await work_stream_messages(docket):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await survivor.kill()
    finally:
        await dying.kill()
    assert log.read_text().splitlines() == [f"done {','.join(group.member_keys)}"]
    assert (await group.progress()).done == 3


async def test_kill_9_of_the_worker_running_the_callback(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    # The callback's first run holds until its worker is killed; a second worker
    # gets the same message after the redelivery timeout and finishes it: it ends
    # once, and no second callback message was ever run.
    docket.register(worker_process.note)
    docket.register(worker_process.settle)
    probe = await Probe.start(docket)
    log = tmp_path / "callback.log"
    first = await spawn(tmp_path / "first.log", nats_url, docket.name)
    try:
        await docket.group(
            [docket.call(worker_process.note)(f"m{n}") for n in range(3)],
            then=docket.call(worker_process.settle)(str(log)),
        )
        started = await probe.wait_event("started", "settle")
        assert started.pid == first.pid
        await first.kill()
        second = await spawn(tmp_path / "second.log", nats_url, docket.name)
        try:
            done = await probe.wait_event("done", "settle", within=20)
            assert done.pid == second.pid
            async with asyncio.timeout(20):
                while await work_stream_messages(docket):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await second.kill()
    finally:
        await first.kill()
    lines = log.read_text().splitlines()
    assert lines == [
        f"start {first.pid}",
        f"start {second.pid}",
        "done 3 completed,completed,completed",
    ]
