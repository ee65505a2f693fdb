"""The run's context as arguments: its docket, execution, key and arguments
(`CurrentWorker` is the worker's own: worker/_worker.py).

These are `Provider`s: besides as defaults they also supply the value as
`Annotated[...]` metadata (`d: Annotated[Docket, CurrentDocket()]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from uncalled_for import current_frame
from uncalled_for.frames import _CallArgument  # pyright: ignore[reportPrivateUsage]

from ._base import Provider, current_docket, current_execution

if TYPE_CHECKING:
    from ..docket import Docket
    from ..execution import Execution


class _CurrentDocket(Provider["Docket"]):
    async def __aenter__(self) -> Docket:
        return current_docket.get()


class _CurrentExecution(Provider["Execution"]):
    async def __aenter__(self) -> Execution:
        return current_execution.get()


class _TaskKey(Provider[str]):
    async def __aenter__(self) -> str:
        return current_execution.get().key


def CurrentDocket() -> Docket:
    """The Docket the running task came from: `docket: Docket = CurrentDocket()`."""
    return cast("Docket", _CurrentDocket())


def CurrentExecution() -> Execution:
    """The running Execution (key, when, attempt, ...): `e: Execution = CurrentExecution()`."""
    return cast("Execution", _CurrentExecution())


def TaskKey() -> str:
    """The running task's key: `key: str = TaskKey()`."""
    return cast(str, _TaskKey())


class _TaskArgument(_CallArgument):
    """One argument the caller passed to the task, for a dependency function.

    Unlike uncalled-for's `CallArgument`, only what the caller supplied counts:
    neither another dependency's value nor a signature default.
    """

    async def __aenter__(self) -> Any:
        if self.parameter is None:
            raise ValueError("TaskArgument() needs a parameter name here: TaskArgument('name')")
        try:
            return await current_frame().resolve(self.parameter, provided_only=True)
        except LookupError:
            if self.optional:
                return None
            execution = current_execution.get()
            raise KeyError(
                f"{execution.function_name}() was not called with an argument "
                f"{self.parameter!r} (use TaskArgument(..., optional=True) to allow that)"
            ) from None


def TaskArgument(parameter: str | None = None, optional: bool = False) -> Any:
    """An argument of the running task, for dependency functions.

    `TaskArgument()` reads the argument named like the parameter it is declared
    on; `TaskArgument("name")` a named one. Only arguments the caller supplied
    count (`CallArgument` also sees other dependencies' values and defaults);
    `optional=True` gives None for a missing one instead of failing.
    """
    return cast(Any, _TaskArgument(parameter, optional))
