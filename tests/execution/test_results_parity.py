"""docket parity: `get_result(timeout=..., deadline=...)`, failures without a stored
exception, unreadable stored data, and `execution_ttl=0` (fire and forget)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from docket_nats import Docket, Execution, ExecutionCancelled, ExecutionState, Worker
from docket_nats._results import ResultUnavailable, StoredException
from docket_nats._state_records import TERMINAL, ExecutionRecord, bucket_stream, state_subject

pytestmark = pytest.mark.timeout(60)


async def double(value: int) -> int:
    return value * 2


async def triple(value: int) -> int:
    return value * 3


async def broken() -> None:
    raise ValueError("out of cheese")


def zero_ttl_worker(docket: Docket) -> Worker:
    return Worker(docket, minimum_check_interval=timedelta(milliseconds=20))


async def write_record(docket: Docket, key: str, record: ExecutionRecord | bytes) -> None:
    """A state record as a worker would leave it (or any bytes at all)."""
    data = record if isinstance(record, bytes) else msgspec.msgpack.encode(record)
    ack = await docket.connection.js.publish(state_subject(docket.names, key), data)
    assert ack.seq > 0


async def test_a_timeout_and_a_deadline_together_are_refused(docket: Docket) -> None:
    execution = await docket.add(double, datetime.now(UTC) + timedelta(hours=1))(1)
    with pytest.raises(ValueError, match=r"^Cannot specify both timeout and deadline$"):
        await execution.get_result(
            timeout=timedelta(seconds=1), deadline=datetime.now(UTC) + timedelta(seconds=1)
        )


async def test_an_expired_timeout_or_deadline_raises_timeout_error(docket: Docket) -> None:
    execution = await docket.add(double, datetime.now(UTC) + timedelta(hours=1), key="later")(1)
    expected = r"^Timeout waiting for execution later to complete$"
    with pytest.raises(TimeoutError, match=expected):
        await execution.get_result(timeout=timedelta(0))
    with pytest.raises(TimeoutError, match=expected):
        await execution.get_result(deadline=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(TimeoutError, match=expected):
        await execution.get_result(timeout=timedelta(milliseconds=200))
    assert execution.state is ExecutionState.SCHEDULED


async def test_a_cancelled_execution_raises_execution_cancelled(docket: Docket) -> None:
    execution = await docket.add(double, datetime.now(UTC) + timedelta(hours=1), key="off")(1)
    await docket.cancel("off")
    with pytest.raises(ExecutionCancelled, match=r"^Execution off was cancelled$"):
        await execution.get_result(timeout=timedelta(seconds=5))


async def test_a_failure_without_a_stored_exception_raises_its_error_text(
    docket: Docket,
) -> None:
    docket.register(broken)
    failed = ExecutionRecord(
        state="failed", function="broken", error="ValueError: out of cheese", worker="w"
    )
    await write_record(docket, "plain-failure", failed)
    execution = await docket.get_execution("plain-failure")
    assert execution is not None and execution.state is ExecutionState.FAILED
    with pytest.raises(Exception, match=r"^ValueError: out of cheese$") as raised:
        await execution.get_result()
    assert type(raised.value) is Exception  # the type could not be kept: docket's fallback

    await write_record(docket, "no-text", ExecutionRecord(state="failed", function="broken"))
    execution = await docket.get_execution("no-text")
    assert execution is not None
    with pytest.raises(Exception, match=r"^Task execution failed$"):
        await execution.get_result()


async def test_unreadable_stored_data_is_a_clear_error(
    docket: Docket, caplog: pytest.LogCaptureFixture
) -> None:
    docket.register(double)
    docket.register(broken)
    # 0xc1 is a byte msgpack never uses: nothing can decode it.
    garbled_result = ExecutionRecord(state="completed", function="double", result=b"\xc1")
    await write_record(docket, "garbled-result", garbled_result)
    execution = await docket.get_execution("garbled-result")
    assert execution is not None and execution.state is ExecutionState.COMPLETED
    with pytest.raises(ResultUnavailable, match="stored result of execution 'garbled-result'"):
        await execution.get_result()

    garbled_exception = ExecutionRecord(
        state="failed",
        function="broken",
        error="ValueError: out of cheese",
        exception=StoredException(type="builtins:ValueError", message="x", args=b"\xc1"),
    )
    await write_record(docket, "garbled-exception", garbled_exception)
    execution = await docket.get_execution("garbled-exception")
    assert execution is not None
    with pytest.raises(ResultUnavailable, match=r"failed \(ValueError: out of cheese\)"):
        await execution.get_result()

    # A record that is not a record at all reads as none, with a warning naming the key.
    await write_record(docket, "not-a-record", b"\xc1\xc1")
    with caplog.at_level(logging.WARNING, logger="docket_nats.state"):
        assert await docket.get_execution("not-a-record") is None
    assert "'not-a-record'" in caplog.text


async def test_a_completed_task_that_returned_nothing_gives_none(
    docket: Docket, worker: Worker
) -> None:
    async def quiet() -> None:
        pass

    execution = await docket.add(quiet)()
    await worker.run_until_finished()
    assert await execution.get_result(timeout=timedelta(seconds=5)) is None


async def test_zero_execution_ttl_keeps_no_record(nats_url: str, docket_name: str) -> None:
    async with Docket(name=docket_name, url=nats_url, execution_ttl=timedelta(0)) as docket:
        async with zero_ttl_worker(docket) as worker:
            done = await docket.add(double, key="done")(21)
            failed = await docket.add(broken, key="failed")()
            await worker.run_until_finished()
        for execution in (done, failed):
            assert await docket.get_execution(execution.key) is None
            await execution.sync()
            assert execution.state is ExecutionState.SCHEDULED  # docket: nothing is known
            with pytest.raises(TimeoutError):
                await execution.get_result(deadline=datetime.now(UTC) + timedelta(seconds=0.1))
        # Nothing readable is left in the bucket, not even for a moment.
        message = await docket.connection.js.get_last_msg(
            bucket_stream(docket.names), state_subject(docket.names, "done")
        )
        assert message.headers is not None and message.headers["KV-Operation"] == "PURGE"


async def test_zero_execution_ttl_still_ends_a_waiting_get_result(
    nats_url: str, docket_name: str
) -> None:
    """No result is kept (docket's fire and forget), but a caller already waiting
    learns that the task ended (the subscription `get_result` waits on sees the end):
    None for a completed one, the error text for a failure, a cancel as a cancel."""
    async with Docket(name=docket_name, url=nats_url, execution_ttl=timedelta(0)) as docket:
        done = await docket.add(double)(21)
        failed = await docket.add(broken)()
        cancelled = await docket.add(double, datetime.now(UTC) + timedelta(hours=1))(1)
        subscribed = [asyncio.Event() for _ in range(3)]

        async def watch(execution: Execution, ready: asyncio.Event) -> None:
            async with asyncio.timeout(10):
                async for event in execution.subscribe(ready=ready):
                    if event["type"] == "state" and event["state"] in TERMINAL:
                        return

        watchers = [
            asyncio.create_task(watch(execution, ready))
            for execution, ready in zip((done, failed, cancelled), subscribed, strict=True)
        ]
        async with asyncio.timeout(10):
            for ready in subscribed:
                await ready.wait()
        await docket.cancel(cancelled.key)
        async with zero_ttl_worker(docket) as worker:
            await worker.run_until_finished()
        await asyncio.gather(*watchers)
        outcomes = await asyncio.gather(
            *(execution.get_result() for execution in (done, failed, cancelled)),
            return_exceptions=True,
        )
    assert outcomes[0] is None
    assert type(outcomes[1]) is Exception and str(outcomes[1]) == "ValueError: out of cheese"
    assert isinstance(outcomes[2], ExecutionCancelled)


async def test_mixed_workloads_keep_their_own_execution_ttl(
    nats_url: str, docket_name: str
) -> None:
    async with (
        Docket(
            name=f"{docket_name}-kept", url=nats_url, execution_ttl=timedelta(minutes=1)
        ) as kept,
        Docket(name=f"{docket_name}-forgot", url=nats_url, execution_ttl=timedelta(0)) as forgot,
    ):
        async with zero_ttl_worker(kept) as kept_worker, zero_ttl_worker(forgot) as forgot_worker:
            remembered = await kept.add(double)(10)
            forgotten = await forgot.add(triple)(20)
            await asyncio.gather(
                kept_worker.run_until_finished(), forgot_worker.run_until_finished()
            )
        assert await remembered.get_result(timeout=timedelta(seconds=1)) == 20
        with pytest.raises(TimeoutError):
            await forgotten.get_result(timeout=timedelta(seconds=0.1))
