"""Execution: one scheduled call of a task, and the enums that describe it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from nats.aio.msg import Msg

from ._signatures import compact_signature, get_signature
from ._types import (
    Disposition,
    ExecutionCancelled,
    ExecutionState,
    ProgressEvent,
    StateEvent,
    TaskCall,
    TaskFunction,
)

if TYPE_CHECKING:
    from ._state_store import ExecutionRecord
    from .docket import Docket


class Execution:
    """A task function with its arguments, key, time and attempt."""

    def __init__(
        self,
        docket: Docket,
        function: TaskFunction,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
        when: datetime,
        attempt: int,
        function_name: str | None = None,
        message: Msg | None = None,
    ) -> None:
        self._docket = docket
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
        # Lifecycle, as workers record it (see _state_store.py); refreshed by sync().
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
        docket: Docket,
        message: Msg | bytes,
        redelivered: bool = False,
        fallback_task: TaskFunction | None = None,
        message_id: Any = None,
        sync: bool = True,
    ) -> Self:
        """Rebuild the execution a work stream message (or its body) carries.

        A task the docket does not know runs `fallback_task` (keeping its own
        name); without one this raises ValueError, as docket does. With `sync`
        the state is read back from NATS. `redelivered` and `message_id` are
        docket's parameters: here a delivered `Msg` tells both itself.
        """
        from ._wire import decode_envelope, task_signature

        data = message.data if isinstance(message, Msg) else message
        envelope = decode_envelope(data)
        function = docket.tasks.get(envelope.function) or fallback_task
        if function is None:
            raise ValueError(
                f"Task function {envelope.function!r} is not registered with the current docket"
            )
        args, kwargs = task_signature(function).decode(envelope, docket.allow_pickle)
        execution = cls(
            docket,
            function,
            args,
            kwargs,
            envelope.key,
            envelope.when,
            envelope.attempt,
            function_name=envelope.function,
            message=message if isinstance(message, Msg) else None,
        )
        if sync:
            await execution.sync()
        return execution

    @property
    def docket(self) -> Docket:
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
            self._progress = ExecutionProgress(self._docket, self._key, self)
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
        from ._state_queries import sync

        await sync(self)

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
        from ._state_queries import get_result

        if timeout is not None and deadline is not None:
            raise ValueError("Cannot specify both timeout and deadline")
        if timeout is not None:
            deadline = datetime.now(UTC) + timeout
        return await get_result(self, deadline)

    def subscribe(
        self, *, ready: asyncio.Event | None = None
    ) -> AsyncGenerator[StateEvent | ProgressEvent, None]:
        """The current state and progress, then every change (see state_reading.subscribe)."""
        from ._state_queries import subscribe

        return subscribe(self, ready)

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


# docket's `docket.execution` offers these too. At the end: _execution_progress.py needs the
# classes above (through _state_store.py) before it can be imported.
from ._execution_progress import ExecutionProgress  # noqa: E402

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
