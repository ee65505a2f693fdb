"""The base of everything a task can ask for by default value, and the run context.

A task declares a dependency as a parameter default (`docket=CurrentDocket()`) or
in `Annotated[...]`. For each run the worker enters every dependency as an async
context manager, with `current_docket`, `current_worker` and `current_execution`
set, and passes what `__aenter__` returns as the argument; `__aexit__` runs after
the task, also when it failed.

Three kinds of dependency also shape the run itself (docket's names): a
`Runtime` calls the task (Timeout), a `FailureHandler` may take a failure over
(Retry), a `CompletionHandler` acts once the run is over (Perpetual, Cron).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..docket import Docket
    from ..execution import Execution
    from ..worker import Worker

current_docket: ContextVar[Docket] = ContextVar("current_docket")
current_worker: ContextVar[Worker] = ContextVar("current_worker")
current_execution: ContextVar[Execution] = ContextVar("current_execution")


class Dependency:
    """Something the worker resolves for a task run; subclasses override __aenter__."""

    # At most one dependency of a class with single=True per task (Retry, Timeout, ...).
    single: ClassVar[bool] = False
    # In `Annotated[T, dependency]` metadata: True means the dependency supplies the
    # parameter's value, as it would as the default; False means it only wraps the
    # run and sees the argument through `bind_to_parameter` (docket's semantics for
    # custom dependencies such as per-argument limits).
    supplies_value: ClassVar[bool] = False

    def for_parameter(self, name: str) -> Dependency:
        """The dependency to enter for the parameter `name` (a copy bound to it, or self)."""
        return self

    def bind_to_parameter(self, name: str, value: Any) -> Dependency:
        """As wrapping `Annotated` metadata: a copy that knows the argument it wraps."""
        return self

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


@dataclass(slots=True)
class TaskOutcome:
    """How a run ended, for the outcome handlers."""

    duration: timedelta
    result: Any = None
    exception: BaseException | None = None


class Runtime(Dependency, abc.ABC):
    """Calls the task function itself (e.g. under a deadline). One per task."""

    single = True
    supplies_value = True

    @abc.abstractmethod
    async def run(
        self,
        execution: Execution,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...


class FailureHandler(Dependency, abc.ABC):
    """May take a failed run over (e.g. schedule a retry). One per task."""

    single = True
    supplies_value = True

    @abc.abstractmethod
    async def handle_failure(self, execution: Execution, outcome: TaskOutcome) -> bool:
        """True when handled (and logged): the run does not count as failed."""


class CompletionHandler(Dependency, abc.ABC):
    """Acts once a run is over, success or unretried failure. One per task."""

    single = True
    supplies_value = True

    @abc.abstractmethod
    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        """True when handled (and logged) here."""


def format_duration(seconds: float) -> str:
    """A duration as the worker's log lines show it."""
    if seconds < 100:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.0f}s"


def describe(execution: Execution) -> str:
    """A run as log lines name it: its call with only `Logged` arguments shown."""
    from ..annotations import call_repr

    return call_repr(execution)
