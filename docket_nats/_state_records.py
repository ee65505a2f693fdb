"""Execution state and results as stored: the record, where it lives, how it is read.

Workers write records (worker/_recorder.py); `_state_queries.py` reads them into
executions.

Nothing is written when a task is added (`add()` stays one publish): a key's
SCHEDULED or QUEUED state is its message in the work stream (`docket.N.sched.<key>`
or `docket.N.run.<key>`). Workers record the rest in the KV bucket
`docket-N-executions` under `state.<key>`: RUNNING when a run starts, then
COMPLETED / FAILED / CANCELLED with the result, expiring after `execution_ttl`
(a per-message TTL; with execution_ttl=0 nothing is kept, see `ttl_header`).
The record carries the stream sequence of the run message it describes, so a
reader can tell which is newer: a record for an older message than the one in
the work stream (the key was added again, or a retry was scheduled) yields to
the stream.

Workers write with a plain core publish to the bucket's subject: the stream stores
it, subscribers of the subject see it live, and the worker never waits for an ack.
RUNNING is written only for runs still going after RUNNING_DELAY (20 ms), so a
short task costs one publish (its end), not two.
A worker that dies leaves RUNNING behind; the redelivered run overwrites it.

A run that ends FAILED for good (no retry left) also keeps its call: the work
stream message's body as it was (`call`, up to CALL_LIMIT bytes), so that
`Docket.retry_failed` can add it again once the message is gone. Only failures
pay for it: completed runs keep no call.

The bucket keeps one record per key (history 1): a key's states over time are
the times its latest record carries (due, started, ended; see `transitions`),
not older records. A longer history would cost a record per state change per
key, and an older RUNNING record (it has no TTL) would come back as the key's
latest once the finished record after it expired.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import NotFoundError

from ._connection import key_value_bucket
from ._results import StoredException
from ._subjects import (
    KV_OPERATION,
    MINIMUM_TTL,
    ROLLUP,
    TTL,
    Names,
    encode_key,
    kv_stream,
    kv_subject,
    ttl_value,
)
from ._types import ExecutionState

if TYPE_CHECKING:
    from ._context import DocketContext

logger = logging.getLogger("docket_nats.state")

TERMINAL = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED)
_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL)
# A record without a per-message TTL (RUNNING) still goes after this long.
MINIMUM_BUCKET_AGE = timedelta(days=7)
# The largest call a FAILED record keeps for `Docket.retry_failed`.
CALL_LIMIT = 64 * 1024


class ExecutionRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One key's latest run, as workers record it."""

    v: int = 1
    state: str
    function: str = ""
    when: datetime | None = None
    attempt: int = 1
    # The work stream sequence of the run message this record describes.
    sequence: int = 0
    worker: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    result: bytes | None = None
    exception: StoredException | None = None
    # Why a return value is missing although the task completed.
    result_problem: str | None = None
    # FAILED for good: the run message's body (the envelope), to add it again.
    call: bytes | None = None
    # Why a FAILED record keeps no call (too large).
    call_problem: str | None = None


encode_record = msgspec.msgpack.Encoder().encode
decode_record = msgspec.msgpack.Decoder(ExecutionRecord).decode


def kept_call(data: bytes) -> tuple[bytes | None, str | None]:
    """What a FAILED record keeps of its call: the body, or why not."""
    if len(data) > CALL_LIMIT:
        return None, f"the call is too large to keep ({len(data)} bytes, over {CALL_LIMIT})"
    return data, None


def transitions(
    state: str, when: datetime | None, started_at: datetime | None, completed_at: datetime | None
) -> list[tuple[str, datetime]]:
    """The states a recorded run went through, with their times, oldest first:
    due (scheduled or queued) at `when`, running from `started_at`, then its end
    (`state`, at `completed_at`). From one record's fields (see the module doc)."""
    steps: list[tuple[str, datetime]] = []
    if when is not None:
        steps.append(("due", when))
    if started_at is not None:
        steps.append((ExecutionState.RUNNING.value, started_at))
    if completed_at is not None and state in _TERMINAL_VALUES:
        steps.append((state, completed_at))
    return steps


def bucket_name(names: Names) -> str:
    return names.bucket("executions")


def bucket_stream(names: Names) -> str:
    return kv_stream(bucket_name(names))


def state_subject(names: Names, key: str) -> str:
    return kv_subject(bucket_name(names), f"state.{encode_key(key)}")


def progress_subject(names: Names, key: str) -> str:
    return kv_subject(bucket_name(names), f"progress.{encode_key(key)}")


def ttl_header(ttl: timedelta) -> dict[str, str]:
    """Headers of a finished record: it expires after `execution_ttl`.

    execution_ttl=0 is docket's fire-and-forget mode: no record is kept. The end
    is then written as a purge marker (readers treat it as no record, and it
    removes the RUNNING record before it) whose body still tells live subscribers,
    so a caller already waiting in `get_result()` is not left waiting.
    """
    if ttl <= timedelta(0):
        return {KV_OPERATION: "PURGE", ROLLUP: "sub", TTL: ttl_value(MINIMUM_TTL)}
    return {TTL: ttl_value(ttl.total_seconds())}


def is_removal(headers: dict[str, str] | None) -> bool:
    """A KV delete or purge marker: the key has no value (whatever the body says)."""
    return headers is not None and headers.get(KV_OPERATION) in ("DEL", "PURGE")


async def ensure_bucket(docket: DocketContext) -> None:
    """Create the executions bucket if it does not exist yet (idempotent)."""
    age = max(MINIMUM_BUCKET_AGE, docket.execution_ttl * 2)
    await key_value_bucket(
        docket.connection.js,
        bucket_name(docket.names),
        history=1,
        replicas=docket.replicas,
        ttl=age.total_seconds(),
    )


async def record_cancelled(docket: DocketContext, key: str) -> None:
    """docket.cancel(): whoever waits on the key's result learns it was cancelled."""
    # Sequence 0: the cancel purged the key, so any message the work stream holds
    # for it later is a newer add, which must win over this record.
    record = ExecutionRecord(state=ExecutionState.CANCELLED.value, completed_at=datetime.now(UTC))
    # Awaiting the stream's ack: a read right after cancel() must see the record
    # (a plain publish left get_execution() answering None for a moment).
    await docket.connection.publish(
        state_subject(docket.names, key),
        encode_record(record),
        headers=ttl_header(docket.execution_ttl),
    )


def queued_or_scheduled(names: Names, subject: str) -> ExecutionState:
    """The state a work stream subject stands for."""
    scheduled = subject.startswith(f"{names.prefix}.sched.")
    return ExecutionState.SCHEDULED if scheduled else ExecutionState.QUEUED


async def read_record(docket: DocketContext, key: str) -> ExecutionRecord | None:
    try:
        message = await docket.connection.js.get_last_msg(
            bucket_stream(docket.names), state_subject(docket.names, key)
        )
    except NotFoundError:
        return None
    headers: dict[str, str] | None = message.headers  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not message.data or is_removal(headers):
        return None
    try:
        return decode_record(message.data)
    except msgspec.DecodeError as error:
        # Not ours to repair: it reads as no record, said once per read.
        logger.warning("the state record of %r cannot be read (%s): ignored", key, error)
        return None


async def read_work(docket: DocketContext, key: str) -> tuple[str, int, bytes] | None:
    """The key's message in the work stream: (subject, sequence, data), if any."""
    try:
        message = await docket.connection.js.get_last_msg(
            docket.names.stream, docket.names.any_state(key)
        )
    except NotFoundError:
        return None
    assert message.seq is not None and message.subject is not None
    return message.subject, message.seq, message.data or b""
