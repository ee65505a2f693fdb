"""`Docket.snapshot()` and `Docket.clear()`: what the docket holds, at scale.

Counts come from the server's bookkeeping, never from reading every task: the
work stream's message count (scheduled + runnable), and the workers' consumers'
(one per priority level) `num_pending` (runnable, not yet delivered) and
`num_ack_pending` (delivered, not yet acked). Only a bounded number of tasks
(`limit`) of each kind is listed, one stream read each. A runnable message at
or below its level's consumer's delivered sequence is held by a worker; it
counts as running when that worker's state record says so (otherwise it is
prefetched or waiting for redelivery: queued).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from nats.js.errors import NotFoundError

from ._groups import GroupInfo, list_groups
from ._priority import priority_at
from ._state_queries import apply
from ._state_records import read_record
from ._subjects import LEVELS, SCHEDULE_TARGET, Names
from ._wire import UndecodableMessage, decode_envelope
from ._worker_registry import WorkerInfo, list_workers
from .execution import Execution, ExecutionState, from_envelope, unknown_task

if TYPE_CHECKING:
    from ._context import DocketContext


class RunningExecution(Execution):
    """A task a worker is running now (docket's name), with who and since when."""

    worker: str  # pyright: ignore[reportIncompatibleVariableOverride]
    started: datetime


@dataclass
class DocketSnapshot:
    """docket's snapshot, plus exact counts (lists are bounded by `limit`)."""

    taken: datetime
    total_tasks: int
    future: Sequence[Execution]
    running: Sequence[RunningExecution]
    workers: Collection[WorkerInfo]
    scheduled_count: int = 0
    queued_count: int = 0
    running_count: int = 0
    # Held by workers (delivered, not acked): running or about to run.
    held_count: int = 0
    truncated: bool = False
    notes: list[str] = field(default_factory=list[str])
    # Groups whose members have not all ended (up to `limit`).
    groups: list[GroupInfo] = field(default_factory=list[GroupInfo])


async def take_snapshot(docket: DocketContext, limit: int = 1000) -> DocketSnapshot:
    names = docket.names
    js = docket.connection.js
    taken = datetime.now(UTC)
    info, consumers, workers, groups = await asyncio.gather(
        js.stream_info(names.stream),
        asyncio.gather(*(_consumer(docket, level) for level in LEVELS)),
        list_workers(docket.connection.js, docket.names, docket.replicas),
        list_groups(docket, limit),
    )
    total = info.state.messages
    # Per priority level: each has its own consumer.
    delivered: dict[int, int] = {}
    undelivered = held = 0
    for level, consumer in zip(LEVELS, consumers, strict=True):
        if consumer is not None:
            delivered[level] = consumer.delivered.stream_seq if consumer.delivered else 0
            undelivered += consumer.num_pending or 0
            held += consumer.num_ack_pending or 0
        else:  # no worker ever ran: nothing is delivered
            delivered[level] = 0
            undelivered += await _count(docket, names.level_filter(level))
    runnable = undelivered + held
    scheduled, queued_messages = await asyncio.gather(
        _walk(docket, names.sched_filter, info.state.first_seq, limit),
        _walk_runnable(docket, info.state.first_seq, limit),
    )
    future: list[Execution] = [_execution(docket, message) for message in scheduled]
    candidates = [message for message in queued_messages if message[1] <= delivered[message[3]]]
    records = await asyncio.gather(*(read_record(docket, _key(m[0])) for m in candidates))
    running: list[RunningExecution] = []
    confirmed: set[int] = set()
    for message, record in zip(candidates, records, strict=True):
        if (
            record is not None
            and record.state == ExecutionState.RUNNING.value
            and record.sequence == message[1]
        ):
            execution = _execution(docket, message)
            apply(execution, record, None)
            running_execution = _as_running(execution)
            running.append(running_execution)
            confirmed.add(message[1])
    for message in queued_messages:
        if message[1] not in confirmed:
            future.append(_execution(docket, message))
    return DocketSnapshot(
        taken=taken,
        total_tasks=total,
        future=future,
        running=running,
        workers=workers,
        scheduled_count=max(0, total - runnable),
        queued_count=max(0, runnable - len(running)),
        running_count=len(running),
        held_count=held,
        truncated=len(scheduled) >= limit or len(queued_messages) >= limit,
        groups=groups,
    )


async def clear(docket: DocketContext) -> int:
    """Purge every scheduled and runnable task; returns how many were removed.

    Running tasks go on (their acks become no-ops); a copy a worker already
    prefetched may still run. Callers waiting on a cleared key's result are
    not told (use `cancel(key)` for that).
    """
    names = docket.names
    total = 0
    for subject_filter in (names.sched_filter, *names.run_filters):
        total += await docket.connection.purge(names.stream, subject_filter)
    return total


# Subject, stream sequence, body, and the priority level it runs at (a future
# task's is its schedule target's).
Message = tuple[str, int, bytes, int]


async def _walk(
    docket: DocketContext, subject_filter: str, start: int, limit: int
) -> list[Message]:
    """Up to `limit` messages on `subject_filter`, oldest first (one read each)."""
    js = docket.connection.js
    found: list[Message] = []
    sequence = max(1, start)
    while len(found) < limit:
        try:
            message = await js.get_msg(
                docket.names.stream, seq=sequence, next=True, subject=subject_filter
            )
        except NotFoundError:
            break
        assert message.seq is not None and message.subject is not None
        headers = cast(dict[str, str], message.headers or {})  # nats-py leaves it untyped
        level = docket.names.level_of(headers.get(SCHEDULE_TARGET, message.subject))
        found.append((message.subject, message.seq, message.data or b"", level))
        sequence = message.seq + 1
    return found


async def _walk_runnable(docket: DocketContext, start: int, limit: int) -> list[Message]:
    """Up to `limit` runnable messages of every priority level, oldest first."""
    levels = await asyncio.gather(
        *(
            _walk(docket, subject_filter, start, limit)
            for subject_filter in docket.names.run_filters
        )
    )
    return sorted((message for level in levels for message in level), key=lambda m: m[1])[:limit]


async def _consumer(docket: DocketContext, level: int) -> Any:
    names = docket.names
    try:
        return await docket.connection.js.consumer_info(names.stream, names.level_consumer(level))
    except NotFoundError:
        return None


async def _count(docket: DocketContext, subject_filter: str) -> int:
    info = await docket.connection.js.stream_info(
        docket.names.stream, subjects_filter=subject_filter
    )
    return sum((info.state.subjects or {}).values())


def _key(subject: str) -> str:
    return Names.key_of(subject)


def _execution(docket: DocketContext, message: Message) -> Execution:
    subject, _, data, level = message
    key = _key(subject)
    scheduled = subject.startswith(f"{docket.names.prefix}.sched.")
    try:
        execution = from_envelope(docket, decode_envelope(data), lenient=True)
    except UndecodableMessage:
        execution = Execution(docket, unknown_task("?"), (), {}, key, datetime.now(UTC), 1)
    execution.state = ExecutionState.SCHEDULED if scheduled else ExecutionState.QUEUED
    execution.priority = priority_at(level)
    return execution


def _as_running(execution: Execution) -> RunningExecution:
    running = RunningExecution(
        execution.docket,
        execution.function,
        execution.args,
        execution.kwargs,
        execution.key,
        execution.when,
        execution.attempt,
        execution.function_name,
    )
    running.state = execution.state
    running.worker = execution.worker or ""
    running.started = execution.started_at or execution.when
    running.started_at = execution.started_at
    running.result_record = execution.result_record
    return running
