"""The base of everything a task can ask for by default value, and the run context.

A task declares a dependency as a parameter default (`docket=CurrentDocket()`) or
in `Annotated[...]`. For each run the worker enters every dependency as an async
context manager, with `current_docket`, `current_worker` and `current_execution`
set, and passes what `__aenter__` returns as the argument; `__aexit__` runs after
the task, also when it failed.
"""

from __future__ import annotations

from contextvars import ContextVar
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

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
