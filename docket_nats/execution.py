"""Execution: one scheduled call of a task, and the enums that describe it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from . import _state_queries as state_queries
from ._context import DocketContext, HasContext, context_of
from ._execution_progress import ExecutionProgress
from ._priority import Priority, priority_at, priority_of
from ._signatures import compact_signature, get_signature
from ._state_records import read_record, read_work
from ._types import (
    Disposition,
    ExecutionCancelled,
    ExecutionState,
    ProgressEvent,
    StateEvent,
    TaskCall,
    TaskFunction,
)
from ._wire import ArgumentError, TaskEnvelope, UndecodableMessage, decode_envelope, task_signature

if TYPE_CHECKING:
    from ._state_records import ExecutionRecord


class Execution:
    """A task function with its arguments, key, time and attempt."""

    def __init__(
        self,
        docket: DocketContext | HasContext,
        function: TaskFunction,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
        when: datetime,
        attempt: int,
        function_name: str | None = None,
        message: Msg | None = None,
        priority: Priority | None = None,
    ) -> None:
        self._docket = context_of(docket)
        self._function = function
        self._function_name: str = function_name or str(getattr(function, "__name__", function))
        self._args = args
        self._kwargs = kwargs
        self._key = key
        self.when = when
        self.attempt = attempt
        self.disposition = Disposition.LOADED
        # Why add_many / replace_many could not schedule it (Disposition.FAILED).
        self.schedule_exception: BaseException | None = None
        # The JetStream message this run came from (worker side only): its
        # stream sequence is what a reschedule hands the key over from.
        self.message = message
        # An extension of docket's Execution: the function's declared priority
        # unless the call (or the message it came from) says otherwise.
        self.priority = priority if priority is not None else priority_of(function)
        # Lifecycle, as workers record it (see _state_records.py); refreshed by sync().
        self.state = ExecutionState.SCHEDULED
        self.worker: str | None = None
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.error: str | None = None
        self.result_record: ExecutionRecord | None = None
        self._progress: ExecutionProgress | None = None

    @classmethod
    async def from_message(
        cls,
        docket: DocketContext | HasContext,
        message: Msg | bytes,
        redelivered: bool = False,
        fallback_task: TaskFunction | None = None,
        message_id: Any = None,
        sync: bool = True,
    ) -> Execution:
        """Rebuild the execution a work stream message (or its body) carries.

        A task the docket does not know runs `fallback_task` (keeping its own
        name); without one this raises ValueError, as docket does. With `sync`
        the state is read back from NATS. `redelivered` and `message_id` are
        docket's parameters: here a delivered `Msg` tells both itself.
        """
        if isinstance(message, Msg):
            body, delivered = message.data, message
        else:
            body, delivered = message, None
        execution = from_envelope(
            context_of(docket), decode_envelope(body), delivered, fallback_task=fallback_task
        )
        if sync:
            await execution.sync()
        return execution

    @property
    def docket(self) -> DocketContext:
        """The docket's context (its name, connection and settings). Tasks that
        want the whole Docket ask for `CurrentDocket()`."""
        return self._docket

    @property
    def function(self) -> TaskFunction:
        return self._function

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._kwargs

    @property
    def key(self) -> str:
        return self._key

    @property
    def redelivered(self) -> bool:
        """True when JetStream delivered this run before (its worker died or stalled)."""
        return self.message is not None and self.message.metadata.num_delivered > 1

    @property
    def progress(self) -> ExecutionProgress:
        """What the task reported with `Progress()` (made on first use)."""
        if self._progress is None:
            self._progress = ExecutionProgress(self._docket, self._key, id(self))
            if self.state is ExecutionState.RUNNING:
                self._progress.apply(None, running=True)
        return self._progress

    @property
    def has_progress(self) -> bool:
        """True once `progress` was used (it is made on first use)."""
        return self._progress is not None

    @property
    def progress_reported(self) -> bool:
        return self._progress is not None and self._progress.updated_at is not None

    @property
    def result_key(self) -> str | None:
        """docket's attribute: where a stored result lives (here: the key's record)."""
        record = self.result_record
        return self._key if record is not None and record.result is not None else None

    async def sync(self) -> None:
        """Refresh state, worker, times, error and progress from NATS."""
        await state_queries.sync(self)

    async def get_result(
        self,
        *,
        timeout: timedelta | None = None,  # noqa: ASYNC109  (docket's signature)
        deadline: datetime | None = None,
    ) -> Any:
        """Wait for the task to finish; return its value or raise its exception.

        Raises ValueError for both a timeout and a deadline, ExecutionCancelled
        when it was cancelled, TimeoutError when the timeout / deadline passes
        first, a plain Exception with the error text when it failed and no
        exception was stored, and `results.ResultUnavailable` when it completed
        with a value that could not be stored or cannot be decoded.
        """
        if timeout is not None and deadline is not None:
            raise ValueError("Cannot specify both timeout and deadline")
        if timeout is not None:
            deadline = datetime.now(UTC) + timeout
        return await state_queries.get_result(self, deadline)

    def subscribe(
        self, *, ready: asyncio.Event | None = None
    ) -> AsyncGenerator[StateEvent | ProgressEvent, None]:
        """The current state and progress, then every change (see state_reading.subscribe)."""
        return state_queries.subscribe(self, ready)

    def call_repr(self) -> str:
        """This run as log lines show it: `name(logged arguments){key}` (see `Logged`)."""
        from .annotations import call_repr

        return call_repr(self)

    def get_argument(self, parameter: str) -> Any:
        bound = inspect.signature(self._function).bind_partial(*self._args, **self._kwargs)
        return bound.arguments[parameter]

    def __repr__(self) -> str:
        return (
            f"Execution({self._function_name!r}, key={self._key!r}, "
            f"when={self.when.isoformat()}, attempt={self.attempt})"
        )


class UnknownTask(ValueError):
    """A message names a task this process has no function registered for."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        super().__init__(
            f"Task function {function_name!r} is not registered with the current docket"
        )


def from_envelope(
    docket: DocketContext,
    envelope: TaskEnvelope,
    message: Msg | None = None,
    *,
    fallback_task: TaskFunction | None = None,
    lenient: bool = False,
) -> Execution:
    """The one way to rebuild an Execution from a work stream message.

    Strict (a worker, `Execution.from_message`): a task this process does not
    know raises `UnknownTask` (unless `fallback_task` runs it, keeping its own
    name), and arguments that no longer decode raise `ArgumentError`. Lenient
    (listings, state reads): an unknown task gets a stand-in function that
    raises if called, and undecodable arguments read as none.
    """
    function = docket.tasks.get(envelope.function) or fallback_task
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if function is None:
        if not lenient:
            raise UnknownTask(envelope.function)
        function = unknown_task(envelope.function)
    else:
        try:
            args, kwargs = task_signature(function).decode(envelope, docket.allow_pickle)
        except ArgumentError:
            if not lenient:
                raise
    return Execution(
        docket,
        function,
        args,
        kwargs,
        envelope.key,
        envelope.when,
        envelope.attempt,
        function_name=envelope.function,
        message=message,
        priority=priority_at(docket.names.level_of(message.subject)) if message else None,
    )


def unknown_task(function_name: str) -> TaskFunction:
    """A stand-in for a task this process does not know (it cannot be run here)."""

    def unknown(*args: Any, **kwargs: Any) -> None:
        raise LookupError(f"the task {function_name!r} is not registered in this process")

    unknown.__name__ = function_name or "unknown"
    return unknown


async def load_execution(docket: DocketContext, key: str) -> Execution | None:
    """The execution under `key`, from the work stream or the workers' record."""
    record, work = await asyncio.gather(read_record(docket, key), read_work(docket, key))
    if record is None and work is None:
        return None
    envelope = None
    if work is not None:
        try:
            envelope = decode_envelope(work[2])
        except UndecodableMessage:
            pass
    if envelope is not None:
        execution = from_envelope(docket, envelope, lenient=True)
    else:  # known from its record only
        function_name = record.function if record is not None else ""
        function = docket.tasks.get(function_name) or unknown_task(function_name)
        execution = Execution(docket, function, (), {}, key, datetime.now(UTC), 1, function_name)
    state_queries.apply(execution, record, work)
    return execution


__all__ = [
    "Disposition",
    "Execution",
    "ExecutionCancelled",
    "ExecutionProgress",
    "ExecutionState",
    "ProgressEvent",
    "StateEvent",
    "TaskCall",
    "TaskFunction",
    "compact_signature",
    "get_signature",
]
