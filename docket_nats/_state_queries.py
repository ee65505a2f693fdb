"""Reading an execution's state back: `Execution.sync`, `get_result` and
`subscribe`, from the work stream and the state bucket that `_state_records.py`
describes (the record of the newest run wins, see there).

These work on anything shaped like an Execution (`TrackedExecution`), so they
sit below the Execution class, which calls them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from nats.aio.msg import Msg

from ._context import DocketContext
from ._execution_progress import ExecutionProgress, decode_progress, read_progress
from ._results import ResultUnavailable, decode_exception, decode_result
from ._state_records import (
    TERMINAL,
    ExecutionRecord,
    bucket_name,
    decode_record,
    queued_or_scheduled,
    read_record,
    read_work,
)
from ._subjects import KV_PREFIX, encode_key, kv_subject
from ._types import ExecutionCancelled, ExecutionState, ProgressEvent, StateEvent, TaskFunction
from ._wire import UndecodableMessage, decode_envelope

logger = logging.getLogger("docket_nats.state")


class TrackedExecution(Protocol):
    """What reading state back needs of an execution (an Execution is one)."""

    state: ExecutionState
    when: datetime
    attempt: int
    worker: str | None
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    result_record: ExecutionRecord | None

    @property
    def key(self) -> str: ...
    @property
    def docket(self) -> DocketContext: ...
    @property
    def function(self) -> TaskFunction: ...
    @property
    def progress(self) -> ExecutionProgress: ...


async def sync(execution: TrackedExecution) -> bool:
    """Refresh an execution's state (and progress) from NATS; False if nothing is known."""
    docket = execution.docket
    record, work, progress = await asyncio.gather(
        read_record(docket, execution.key),
        read_work(docket, execution.key),
        read_progress(docket, execution.key),
    )
    known = apply(execution, record, work)
    execution.progress.apply(progress, running=execution.state is ExecutionState.RUNNING)
    return known


def apply(
    execution: TrackedExecution, record: ExecutionRecord | None, work: tuple[str, int, bytes] | None
) -> bool:
    if work is not None and (record is None or work[1] > record.sequence):
        subject, _, data = work
        execution.state = queued_or_scheduled(execution.docket.names, subject)
        execution.worker = execution.started_at = execution.completed_at = None
        execution.error = None
        execution.result_record = None
        try:
            envelope = decode_envelope(data)
            execution.when, execution.attempt = envelope.when, envelope.attempt
        except UndecodableMessage:
            pass
        return True
    if record is None:
        execution.state = ExecutionState.SCHEDULED
        return False
    execution.state = ExecutionState(record.state)
    execution.worker = record.worker
    execution.started_at = record.started_at
    execution.completed_at = record.completed_at
    execution.error = record.error
    execution.result_record = record
    if record.when is not None:
        execution.when = record.when
    execution.attempt = record.attempt
    return True


async def get_result(execution: TrackedExecution, deadline: datetime | None) -> Any:
    """Wait (until `deadline`) for the execution to end, then its outcome (docket's
    rules and messages; see `Execution.get_result`)."""
    if execution.state not in TERMINAL:
        await _wait_for_end(execution, deadline)
    if execution.state is ExecutionState.CANCELLED:
        raise ExecutionCancelled(f"Execution {execution.key} was cancelled")
    record = execution.result_record
    if execution.state is ExecutionState.FAILED:
        if record is not None and record.exception is not None:
            raise _stored_exception(execution, record)
        # Nothing stored (execution_ttl=0, or an exception too large to keep).
        raise Exception(execution.error or "Task execution failed")
    if record is None:
        return None
    if record.result_problem is not None:
        raise ResultUnavailable(record.result_problem)
    if record.result is None:
        return None  # it returned None, or nothing is kept (execution_ttl=0)
    try:
        return decode_result(record.result, execution.function, execution.docket.allow_pickle)
    except msgspec.DecodeError as error:
        raise ResultUnavailable(
            f"the stored result of execution {execution.key!r} cannot be decoded: {error}"
        ) from error


async def _wait_for_end(execution: TrackedExecution, deadline: datetime | None) -> None:
    timeout = None
    if deadline is not None:
        timeout = (deadline - datetime.now(UTC)).total_seconds()
        if timeout <= 0:
            raise TimeoutError(f"Timeout waiting for execution {execution.key} to complete")
    try:
        async with asyncio.timeout(timeout):
            async for event in subscribe(execution):
                if event["type"] == "state" and event["state"] in TERMINAL:
                    return
    except TimeoutError:
        raise TimeoutError(f"Timeout waiting for execution {execution.key} to complete") from None


def _stored_exception(execution: TrackedExecution, record: ExecutionRecord) -> BaseException:
    assert record.exception is not None
    try:
        return decode_exception(record.exception, execution.docket.allow_pickle)
    except msgspec.DecodeError as error:
        return ResultUnavailable(
            f"execution {execution.key!r} failed ({execution.error}), and its stored "
            f"exception cannot be decoded: {error}"
        )


# -- events -------------------------------------------------------------------


def state_event(execution: TrackedExecution) -> StateEvent:
    return {
        "type": "state",
        "key": execution.key,
        "state": execution.state,
        "when": execution.when.isoformat(),
        "worker": execution.worker,
        "started_at": execution.started_at.isoformat() if execution.started_at else None,
        "completed_at": execution.completed_at.isoformat() if execution.completed_at else None,
        "error": execution.error,
    }


def progress_event(execution: TrackedExecution) -> ProgressEvent:
    return execution.progress.event()


async def subscribe(
    execution: TrackedExecution, ready: asyncio.Event | None = None
) -> AsyncGenerator[StateEvent | ProgressEvent, None]:
    """The current state and progress, then every change as it happens.

    Subscribes before reading, so nothing between the read and the first live
    update is missed (a change may then show up twice). Live sources: the
    workers' writes to the bucket (state, progress), adds of the key to the work
    stream (scheduled, queued) and cancel notices. `ready` is set once the live
    updates are being received and the current state was read: a change after it
    arrives live, exactly once.
    """
    docket = execution.docket
    names = docket.names
    nc = docket.connection.nc
    token = encode_key(execution.key)
    inbox: asyncio.Queue[Msg] = asyncio.Queue()

    async def deliver(message: Msg) -> None:
        inbox.put_nowait(message)

    subscriptions = [
        await nc.subscribe(kv_subject(bucket_name(names), f"*.{token}"), cb=deliver),  # pyright: ignore[reportUnknownMemberType]
        await nc.subscribe(names.any_state(execution.key), cb=deliver),  # pyright: ignore[reportUnknownMemberType]
    ]
    try:
        await nc.flush()
        await sync(execution)
        if ready is not None:
            ready.set()
        yield state_event(execution)
        yield progress_event(execution)
        while True:
            message = await inbox.get()
            subject = message.subject
            if subject.startswith(KV_PREFIX):
                if ".progress." in subject:
                    progress = decode_progress(message.data)
                    execution.progress.apply(progress)
                    if progress is not None:  # (else the run ended and took it along,
                        yield progress_event(execution)  # which docket does not announce)
                    continue
                if not message.data:
                    continue
                try:
                    record = decode_record(message.data)
                except msgspec.DecodeError:
                    continue
                apply(execution, record, None)
            elif subject.startswith(f"{names.prefix}.cancel."):
                if message.data:  # a replace's notice, not a cancel
                    continue
                execution.state = ExecutionState.CANCELLED
                execution.result_record = None
            else:
                apply(execution, None, (subject, 0, message.data))
            yield state_event(execution)
    finally:
        for subscription in subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception:  # (connection already closed)
                pass
