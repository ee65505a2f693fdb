"""The base of everything a task can ask for by default value, and the run context.

A task declares a dependency as a parameter default (`docket=CurrentDocket()`) or
in `Annotated[...]`. `Dependency` is uncalled-for's (the library docket builds
on), so a dependency written for docket works here unchanged. For each run the
worker enters every dependency as an async context manager, with
`current_docket`, `current_worker` and `current_execution` set, and passes what
`__aenter__` returns as the argument; `__aexit__` runs after the task, also
when it failed.

Three kinds of dependency also shape the run itself (docket's names): a
`Runtime` calls the task (Timeout), a `FailureHandler` may take a failure over
(Retry), a `CompletionHandler` acts once the run is over (Perpetual, Cron).
Each is `single`: one per task.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from uncalled_for import Dependency, Provider, current_frame
from uncalled_for.functional import _Depends  # pyright: ignore[reportPrivateUsage]

from .._types import TaskOutcome

if TYPE_CHECKING:
    from ..docket import Docket
    from ..execution import Execution

__all__ = [
    "CompletionHandler",
    "Dependency",
    "FailureHandler",
    "Provider",
    "Runtime",
    "TaskOutcome",
    "WorkerContext",
    "current_docket",
    "current_execution",
    "current_worker_context",
    "describe",
    "format_duration",
    "run_arguments",
    "run_stack",
]

T = TypeVar("T", covariant=True)

current_docket: ContextVar[Docket] = ContextVar("current_docket")


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What a run may know of the worker running it, below the Worker class:
    its name (log fields, slot holders) and its lease (flow-control slots)."""

    name: str
    redelivery_timeout: timedelta


current_worker_context: ContextVar[WorkerContext] = ContextVar("current_worker_context")
current_execution: ContextVar[Execution] = ContextVar("current_execution")


def run_stack() -> AsyncExitStack:
    """The exit stack of the run being resolved (uncalled-for's, per run).

    What a dependency pushes on it is undone when the run ends, latest first.
    """
    return _Depends.stack.get()


def run_arguments() -> Mapping[str, Any]:
    """The arguments the caller passed to the run being resolved, by parameter name."""
    return current_frame().provided


class Runtime(Dependency[T]):
    """Calls the task function itself (e.g. under a deadline). One per task."""

    single = True

    @abc.abstractmethod
    async def run(
        self,
        execution: Execution,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...


class FailureHandler(Dependency[T]):
    """May take a failed run over (e.g. schedule a retry). One per task."""

    single = True

    @abc.abstractmethod
    async def handle_failure(self, execution: Execution, outcome: TaskOutcome) -> bool:
        """True when handled (and logged): the run does not count as failed."""


class CompletionHandler(Dependency[T]):
    """Acts once a run is over, success or unretried failure. One per task."""

    single = True

    @abc.abstractmethod
    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        """True when handled (and logged) here."""


def format_duration(seconds: float) -> str:
    """A duration as the worker's log lines show it, docket's fixed width:
    `"    12ms"` under 100 s, `"   250s "` from there."""
    if seconds < 100:
        return f"{seconds * 1000:6.0f}ms"
    return f"{seconds:6.0f}s "


def describe(execution: Execution) -> str:
    """A run as log lines name it: its call with only `Logged` arguments shown."""
    from ..annotations import call_repr

    return call_repr(execution)
