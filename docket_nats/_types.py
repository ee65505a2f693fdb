"""The base types every layer shares: states, dispositions, events, a task call.

Nothing here imports from the rest of the package at run time (`Priority` is only
named in an annotation), so any module may use them
(`execution`, `dependencies` and the package re-export them under docket's names).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

if TYPE_CHECKING:
    from ._priority import Priority

TaskFunction = Callable[..., Awaitable[Any]] | Callable[..., Any]


class ExecutionState(enum.Enum):
    """Lifecycle states of a task run (docket's names and values)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Disposition(enum.Enum):
    """What happened when `add()` / `replace()` tried to schedule a task."""

    LOADED = "loaded"
    SCHEDULED = "scheduled"
    ALREADY_SCHEDULED = "already_scheduled"
    STRUCK = "struck"
    SUPERSEDED = "superseded"
    FAILED = "failed"


class StateEvent(TypedDict):
    """What `Execution.subscribe()` yields for a state: every key, always."""

    type: Literal["state"]
    key: str
    state: ExecutionState
    when: str
    worker: str | None
    started_at: str | None
    completed_at: str | None
    error: str | None


class ProgressEvent(TypedDict):
    """What `Execution.subscribe()` yields for progress (docket's keys)."""

    type: Literal["progress"]
    key: str
    current: int | None
    total: int
    message: str | None
    updated_at: str | None


class ExecutionCancelled(Exception):
    """A running task was cancelled through `Docket.cancel()`."""


@dataclass(frozen=True)
class TaskCall:
    """A fully resolved request to schedule one task (see `Docket.call`)."""

    function: TaskFunction
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    key: str
    when: datetime
    function_name: str | None = None
    # An extension: overrides the function's declared Priority (None: keep it).
    priority: Priority | None = None


@dataclass(slots=True)
class TaskOutcome:
    """How a run ended, for the outcome handlers."""

    duration: timedelta
    result: Any = None
    exception: BaseException | None = None


class TaskInvocation(Protocol):
    """One call of a task, as strikes and log lines see it (an Execution is one)."""

    @property
    def function(self) -> Callable[..., Any]: ...
    @property
    def function_name(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def args(self) -> tuple[Any, ...]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
