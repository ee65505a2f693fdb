"""The worker's records of its runs: RUNNING, then how each run ended.

Every write is a core publish to the executions bucket's subject (no ack to
wait for): the stream stores it and subscribers see it live. The record format
and the bucket are `_state_records.py`'s; RUNNING is written late
(`_running_writes.py`). A worker that dies leaves RUNNING behind; the
redelivered run overwrites it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from .._context import DocketContext
from .._metrics import registry as metrics
from .._metrics import task_labels
from .._results import encode_exception, encode_result
from .._running_writes import await_running, forget
from .._state_records import (
    ExecutionRecord,
    bucket_name,
    encode_record,
    kept_call,
    progress_subject,
    ttl_header,
)
from .._subjects import KV_OPERATION, ROLLUP, encode_key, kv_subject
from .._types import ExecutionState, TaskOutcome
from ..execution import Execution

logger = logging.getLogger("docket_nats.state")


class StateRecorder:
    """Records the runs of one worker; every write is a publish without an ack."""

    # Off only to measure what recording costs (benchmarks): docket has no such switch.
    enabled: bool = True

    def __init__(self, docket: DocketContext, worker_name: str) -> None:
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
        await_running(id(execution), partial(self.write_running, execution))

    async def write_running(self, execution: Execution) -> None:
        await self._write(execution, self._record(execution, ExecutionState.RUNNING), None)

    async def finished(self, execution: Execution, outcome: TaskOutcome, handled: bool) -> None:
        """Record how a run ended; a failure a Retry took over is no end (the retry
        is in the work stream, newer than this record)."""
        labels = task_labels(self.docket.name, execution.function_name)
        metrics.running[labels] -= 1
        metrics.observe("docket_task_duration", labels, outcome.duration.total_seconds())
        if handled:
            retried = outcome.exception is not None
            metrics.count("docket_tasks_retried" if retried else "docket_tasks_perpetuated", labels)
        if not (handled and outcome.exception is not None):
            metrics.count("docket_tasks_completed", labels)
            failed = outcome.exception is not None
            metrics.count("docket_tasks_failed" if failed else "docket_tasks_succeeded", labels)
        forget(id(execution))
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
                if execution.message is not None:
                    # The message goes with the ack: keep the call to retry it.
                    record.call, record.call_problem = kept_call(execution.message.data)
        await self._finish(execution, record)

    def refused(self, execution: Execution) -> None:
        """A run flow control refused: it never ran. It is rescheduled (its next
        delivery counts) or dropped (see `dropped`); no RUNNING record for it."""
        metrics.running[task_labels(self.docket.name, execution.function_name)] -= 1
        forget(id(execution))

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
        forget(id(execution))
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
        data = encode_record(record)
        if len(data) > self._max_size:
            logger.warning(
                "task %r: its result is too large to store (%d bytes)", execution.key, len(data)
            )
            record.result = None
            record.exception = None
            record.result_problem = f"the result is too large to store ({len(data)} bytes)"
            if record.call is not None:
                record.call = None
                record.call_problem = "the record with the call is too large to store"
            data = encode_record(record)
        await self._publish(self._state_prefix + encode_key(execution.key), data, headers)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            await self.docket.connection.nc.publish(subject, data, headers=headers)
        except Exception as error:  # (state is best effort; the task is not)
            logger.warning("could not record task state on %s: %s", subject, error)
