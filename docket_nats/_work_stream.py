"""Publishing a task to the work stream: where it goes, and handing a key over.

A task due now goes to its priority level's run subject (`docket.N.run.<key>`
for NORMAL, `run-high` / `run-low` for the others); one due later to
`docket.N.sched.<key>` with a NATS message schedule that fires it onto that
run subject. Every publish carries the
key's expected last sequence (docs/architecture.md): 0 for a new task, so a
taken key is refused atomically, or the running message's own sequence for its
successor (`reschedule`), so the key passes from a run to its next one with no
gap and a newer add or replace wins over it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.errors import APIError

from ._subjects import (
    DOCKET_WHEN,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
    GROUP_HEADERS,
    NORMAL_LEVEL,
    SCHEDULE,
    SCHEDULE_TARGET,
    WRONG_LAST_SEQUENCE,
    Names,
)
from ._wire import TaskEnvelope, encode_envelope, task_signature
from .execution import Execution

# How early future tasks fire; the worker holds them until they are due.
SCHEDULE_LEAD = timedelta(milliseconds=300)


def schedule_time(when: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as `Nats-Schedule: @at` takes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def placement(
    names: Names, key: str, when: datetime, level: int = NORMAL_LEVEL
) -> tuple[str, dict[str, str]]:
    """The subject and schedule headers for a task of `key` due at `when`, to
    run at priority `level`.

    A future task fires SCHEDULE_LEAD early and carries its due time; the
    worker holds it until then (worker/_early_hold.py). The server's
    scheduler passes are >= 250 ms apart, so firing exactly at `when` would
    make tasks due close together up to 250 ms late.
    """
    now = datetime.now(UTC)
    if when <= now:
        return names.run(key, level), {}
    headers = {DOCKET_WHEN: f"{when.timestamp():.6f}"}
    fire = when - SCHEDULE_LEAD
    if fire <= now:
        return names.run(key, level), headers
    headers[SCHEDULE] = f"@at {schedule_time(fire)}"
    headers[SCHEDULE_TARGET] = names.run(key, level)
    return names.sched(key), headers


def encode(execution: Execution) -> bytes:
    """The message body of an execution (arguments typed by the task's signature)."""
    args, kwargs = task_signature(execution.function).encode(
        execution.args, execution.kwargs, execution.docket.allow_pickle
    )
    return encode_envelope(
        TaskEnvelope(
            key=execution.key,
            function=execution.function_name,
            when=execution.when,
            args=args,
            kwargs=kwargs,
            attempt=execution.attempt,
        )
    )


def new_task_headers(names: Names, key: str, headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the expectation that nothing holds `key` yet."""
    headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = "0"
    headers[EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = names.any_state(key)
    return headers


async def reschedule(
    execution: Execution,
    when: datetime,
    attempt: int,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> bool:
    """Hand a running execution's key over to its next run (Perpetual, Retry,
    a run that flow control refused for now).

    The publish expects the running message to be the key's last, so a newer
    add/replace that already took the key wins; returns False then. `args` /
    `kwargs` replace the arguments (Perpetual.perpetuate). The caller acks the
    running message afterwards: a crash in between means a redelivery, never a
    lost chain.
    """
    message = execution.message
    if message is None:
        raise ValueError("only a running execution can be rescheduled")
    context = execution.docket
    successor = Execution(
        context,
        execution.function,
        execution.args if args is None else args,
        execution.kwargs if kwargs is None else kwargs,
        execution.key,
        when,
        attempt,
        execution.function_name,
        priority=execution.priority,
    )
    subject, headers = placement(context.names, execution.key, when, execution.priority.level)
    headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(message.metadata.sequence.stream)
    headers[EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = context.names.any_state(execution.key)
    # A group member's (or callback's) next run still belongs to its group.
    for name in GROUP_HEADERS:
        if message.headers and name in message.headers:
            headers[name] = message.headers[name]
    try:
        await context.connection.publish(subject, encode(successor), headers)
    except APIError as error:
        if error.err_code != WRONG_LAST_SEQUENCE:
            raise
        return False
    return True
