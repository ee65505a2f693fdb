"""Execution state and results: what workers record (_state_queries.py reads it back).

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
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import NotFoundError

from ._metrics import registry as metrics
from ._metrics import task_labels
from ._results import (
    StoredException,
    encode_exception,
    encode_result,
)
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
from .dependencies._admission import AdmissionBlocked
from .execution import ExecutionState

if TYPE_CHECKING:
    from .dependencies._base import TaskOutcome
    from .docket import Docket
    from .execution import Execution

logger = logging.getLogger("docket_nats.state")

TERMINAL = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED)
# A run shows as RUNNING once it has run this long (seconds): shorter runs are
# recorded once, when they end, which keeps recording cheap (one publish per task).
RUNNING_DELAY = 0.02
# A record without a per-message TTL (RUNNING) still goes after this long.
MINIMUM_BUCKET_AGE = timedelta(days=7)


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


_encode = msgspec.msgpack.Encoder().encode
decode_record = msgspec.msgpack.Decoder(ExecutionRecord).decode


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


async def ensure_bucket(docket: Docket) -> None:
    """Create the executions bucket if it does not exist yet (idempotent)."""
    js = docket.connection.js
    name = bucket_name(docket.names)
    try:
        await js.key_value(name)
    except NotFoundError:
        age = max(MINIMUM_BUCKET_AGE, docket.execution_ttl * 2)
        try:
            await js.create_key_value(  # pyright: ignore[reportUnknownMemberType]
                bucket=name, history=1, replicas=docket.replicas, ttl=age.total_seconds()
            )
        except Exception:  # (created concurrently by another process)
            await js.key_value(name)


# -- writing (worker side) ------------------------------------------------------


# Runs of this process whose RUNNING record is not written yet, oldest first:
# id(execution) -> (recorder, execution, monotonic start). One ticker writes the
# ones that are still going after RUNNING_DELAY; a run's final write removes it.
# Removing an entry and enqueueing its publish happen in one step (nats-py queues
# a publish before its first await), so RUNNING can never land after the end.
_waiting: dict[int, tuple[StateRecorder, Execution, float]] = {}
_ticker: asyncio.Task[None] | None = None


def _await_running(recorder: StateRecorder, execution: Execution) -> None:
    global _ticker
    _waiting[id(execution)] = (recorder, execution, time.monotonic())
    if _ticker is not None and not _ticker.done():
        if len(_waiting) > 1:
            return  # the common case: the ticker of this loop is alive and busy
        if _ticker.get_loop() is asyncio.get_running_loop():
            return
    # (None yet, or the ticker of a loop that is gone: start one on this loop.)
    _ticker = asyncio.get_running_loop().create_task(_tick())


async def _tick() -> None:
    global _ticker
    try:
        while _waiting:
            await asyncio.sleep(RUNNING_DELAY)
            due = time.monotonic() - RUNNING_DELAY
            for identity, (_, _, since) in list(_waiting.items()):
                if since > due:
                    break
                entry = _waiting.pop(identity, None)
                if entry is not None:  # else it ended while we wrote others
                    await entry[0].write_running(entry[1])
    finally:
        _ticker = None


async def report_running(execution: Execution) -> None:
    """Progress implies RUNNING: write it now if it is still waiting, so that
    readers never see progress for a run that is not RUNNING yet."""
    entry = _waiting.pop(id(execution), None)
    if entry is not None:
        await entry[0].write_running(execution)


class StateRecorder:
    """Records the runs of one worker; every write is a publish without an ack."""

    # Off only to measure what recording costs (benchmarks): docket has no such switch.
    enabled: bool = True

    def __init__(self, docket: Docket, worker_name: str) -> None:
        self.docket = docket
        self.worker_name = worker_name
        # Made once: these are on every task's path.
        self._max_size = docket.connection.nc.max_payload - 1024
        self._state_prefix = kv_subject(bucket_name(docket.names), "state.")
        self._finished_headers = ttl_header(docket.execution_ttl)
        # execution_ttl=0: no result is kept, so none is encoded either (docket).
        self._keeps_results = docket.execution_ttl > timedelta(0)

    async def started(self, execution: Execution) -> None:
        now = datetime.now(UTC)
        labels = task_labels(self.docket.name, execution.function_name)
        metrics.count("docket_tasks_started", labels)
        if execution.redelivered:
            metrics.count("docket_tasks_redelivered", labels)
        metrics.running[labels] += 1
        metrics.observe("docket_task_punctuality", labels, (now - execution.when).total_seconds())
        if not self.enabled:
            return
        execution.state = ExecutionState.RUNNING
        execution.worker = self.worker_name
        execution.started_at = now
        # Written only if the run is still going RUNNING_DELAY later: most tasks
        # are shorter, and their one finished write says all (see the module doc).
        _await_running(self, execution)

    async def write_running(self, execution: Execution) -> None:
        await self._write(execution, self._record(execution, ExecutionState.RUNNING), None)

    async def finished(self, execution: Execution, outcome: TaskOutcome, handled: bool) -> None:
        """Record how a run ended; a failure a Retry took over is no end (the retry
        is in the work stream, newer than this record)."""
        labels = task_labels(self.docket.name, execution.function_name)
        metrics.running[labels] -= 1
        if isinstance(outcome.exception, AdmissionBlocked):
            # Never ran: rescheduled (its next delivery counts) or dropped (see
            # `dropped`). No RUNNING record for it either.
            _waiting.pop(id(execution), None)
            return
        metrics.observe("docket_task_duration", labels, outcome.duration.total_seconds())
        if handled:
            retried = outcome.exception is not None
            metrics.count("docket_tasks_retried" if retried else "docket_tasks_perpetuated", labels)
        if not (handled and outcome.exception is not None):
            metrics.count("docket_tasks_completed", labels)
            failed = outcome.exception is not None
            metrics.count("docket_tasks_failed" if failed else "docket_tasks_succeeded", labels)
        _waiting.pop(id(execution), None)
        if not self.enabled or (handled and outcome.exception is not None):
            return
        allow_pickle = self.docket.allow_pickle
        if outcome.exception is None:
            record = self._record(execution, ExecutionState.COMPLETED)
            if self._keeps_results:
                record.result, record.result_problem = encode_result(outcome.result, allow_pickle)
            if record.result_problem is not None:
                logger.warning("task %r: %s", execution.key, record.result_problem)
        else:
            record = self._record(execution, ExecutionState.FAILED)
            record.error = f"{type(outcome.exception).__name__}: {outcome.exception}"
            if self._keeps_results:
                record.exception = encode_exception(outcome.exception, allow_pickle)
        await self._finish(execution, record)

    async def cancelled(self, execution: Execution, began: bool = True) -> None:
        """A task stopped by `docket.cancel()`: running, or (`began` False) held
        until its time and cancelled before it started."""
        if began:
            labels = task_labels(self.docket.name, execution.function_name)
            metrics.running[labels] -= 1
        await self._end_cancelled(execution, "docket_tasks_interrupted")

    async def dropped(self, execution: Execution) -> None:
        """A run a Debounce / Cooldown / RateLimit refused for good (never ran)."""
        await self._end_cancelled(execution, "docket_tasks_dropped")

    async def _end_cancelled(self, execution: Execution, counter: str) -> None:
        labels = task_labels(self.docket.name, execution.function_name)
        metrics.count(counter, labels)
        metrics.count("docket_tasks_completed", labels)
        _waiting.pop(id(execution), None)
        if self.enabled:
            await self._finish(execution, self._record(execution, ExecutionState.CANCELLED))

    async def _finish(self, execution: Execution, record: ExecutionRecord) -> None:
        record.completed_at = datetime.now(UTC)
        execution.state = ExecutionState(record.state)
        execution.completed_at = record.completed_at
        execution.error = record.error
        await self._write(execution, record, self._finished_headers)
        if execution.progress_reported:
            # Progress is for running tasks: let it go with the run.
            await self._publish(
                progress_subject(self.docket.names, execution.key),
                b"",
                {KV_OPERATION: "PURGE", ROLLUP: "sub"},
            )
        if execution.has_progress:
            execution.progress.apply(None)  # here too: no current, total 100

    def _record(self, execution: Execution, state: ExecutionState) -> ExecutionRecord:
        message = execution.message
        return ExecutionRecord(
            state=state.value,
            function=execution.function_name,
            when=execution.when,
            attempt=execution.attempt,
            sequence=message.metadata.sequence.stream if message is not None else 0,
            worker=self.worker_name,
            started_at=execution.started_at,
        )

    async def _write(
        self, execution: Execution, record: ExecutionRecord, headers: dict[str, str] | None
    ) -> None:
        data = _encode(record)
        if len(data) > self._max_size:
            logger.warning(
                "task %r: its result is too large to store (%d bytes)", execution.key, len(data)
            )
            record.result = None
            record.exception = None
            record.result_problem = f"the result is too large to store ({len(data)} bytes)"
            data = _encode(record)
        await self._publish(self._state_prefix + encode_key(execution.key), data, headers)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            await self.docket.connection.nc.publish(subject, data, headers=headers)
        except Exception as error:  # (state is best effort; the task is not)
            logger.warning("could not record task state on %s: %s", subject, error)


async def record_cancelled(docket: Docket, key: str) -> None:
    """docket.cancel(): whoever waits on the key's result learns it was cancelled."""
    # Sequence 0: the cancel purged the key, so any message the work stream holds
    # for it later is a newer add, which must win over this record.
    record = ExecutionRecord(state=ExecutionState.CANCELLED.value, completed_at=datetime.now(UTC))
    await docket.connection.nc.publish(
        state_subject(docket.names, key), _encode(record), headers=ttl_header(docket.execution_ttl)
    )


# -- reading --------------------------------------------------------------------


def queued_or_scheduled(names: Names, subject: str) -> ExecutionState:
    """The state a work stream subject stands for."""
    scheduled = subject.startswith(f"{names.prefix}.sched.")
    return ExecutionState.SCHEDULED if scheduled else ExecutionState.QUEUED
