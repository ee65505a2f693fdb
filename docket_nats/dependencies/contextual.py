"""The run's context as arguments: its docket, worker, execution, key and arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .base import Dependency, current_docket, current_execution, current_worker
from .scope import current_scope

if TYPE_CHECKING:
    from ..docket import Docket
    from ..execution import Execution
    from ..worker import Worker


class _CurrentDocket(Dependency):
    supplies_value = True

    async def __aenter__(self) -> Docket:
        return current_docket.get()


class _CurrentWorker(Dependency):
    supplies_value = True

    async def __aenter__(self) -> Worker:
        return current_worker.get()


class _CurrentExecution(Dependency):
    supplies_value = True

    async def __aenter__(self) -> Execution:
        return current_execution.get()


class _TaskKey(Dependency):
    supplies_value = True

    async def __aenter__(self) -> str:
        return current_execution.get().key


def CurrentDocket() -> Docket:
    """The Docket the running task came from: `docket: Docket = CurrentDocket()`."""
    return cast("Docket", _CurrentDocket())


def CurrentWorker() -> Worker:
    """The Worker running the task: `worker: Worker = CurrentWorker()`."""
    return cast("Worker", _CurrentWorker())


def CurrentExecution() -> Execution:
    """The running Execution (key, when, attempt, ...): `e: Execution = CurrentExecution()`."""
    return cast("Execution", _CurrentExecution())


def TaskKey() -> str:
    """The running task's key: `key: str = TaskKey()`."""
    return cast(str, _TaskKey())


class _TaskArgument(Dependency):
    """One argument the caller passed to the task, for a dependency function."""

    supplies_value = True

    def __init__(self, parameter: str | None, optional: bool) -> None:
        self.parameter = parameter
        self.optional = optional

    def for_parameter(self, name: str) -> Dependency:
        # A bare TaskArgument() reads the task argument named like the parameter
        # it is declared on.
        if self.parameter is not None:
            return self
        return _TaskArgument(name, self.optional)

    async def __aenter__(self) -> Any:
        if self.parameter is None:
            raise ValueError("TaskArgument() needs a parameter name here: TaskArgument('name')")
        provided = current_scope().provided
        if self.parameter in provided:
            return provided[self.parameter]
        if self.optional:
            return None
        execution = current_execution.get()
        raise KeyError(
            f"{execution.function_name}() was not called with an argument "
            f"{self.parameter!r} (use TaskArgument(..., optional=True) to allow that)"
        )


def TaskArgument(parameter: str | None = None, optional: bool = False) -> Any:
    """An argument of the running task, for dependency functions.

    `TaskArgument()` reads the argument named like the parameter it is declared
    on; `TaskArgument("name")` a named one. Only arguments the caller supplied
    count; `optional=True` gives None for a missing one instead of failing.
    """
    return cast(Any, _TaskArgument(parameter, optional))
