"""The scope of one task run: its exit stack, its dependency cache, its arguments.

Dependencies that resolve other dependencies (`Depends`) or read the task's
arguments (`TaskArgument`) find the run they belong to through `current_scope`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .base import Dependency

if TYPE_CHECKING:
    from ..execution import Execution
    from .plans import Plan


class RunScope:
    """What one run has resolved, cached and must tear down."""

    def __init__(self, execution: Execution, plan: Plan) -> None:
        self.execution = execution
        self.plan = plan
        self.stack = AsyncExitStack()
        # One value per dependency per run: Depends(f) twice (or nested) calls f once.
        self.cache: dict[Any, Any] = {}
        self._provided: dict[str, Any] | None = None

    @property
    def provided(self) -> dict[str, Any]:
        """The arguments the caller supplied, by parameter name (bound on first use)."""
        if self._provided is None:
            self._provided = self.plan.bind(self.execution.args, self.execution.kwargs)
        return self._provided

    async def enter(self, dependency: Dependency) -> Any:
        """Enter a dependency for this run; it is exited when the run ends."""
        if type(dependency).__aexit__ is _NOTHING_TO_EXIT:
            # Most dependencies only produce a value (CurrentDocket, TaskKey,
            # Retry, ...): skip the exit stack's bookkeeping for them.
            return await dependency.__aenter__()
        return await self.stack.enter_async_context(dependency)


_NOTHING_TO_EXIT = Dependency.__aexit__


_current_scope: ContextVar[RunScope] = ContextVar("docket_nats_run_scope")


def current_scope() -> RunScope:
    try:
        return _current_scope.get()
    except LookupError:
        raise RuntimeError(
            "this dependency can only be resolved by a worker running a task"
        ) from None


def enter_scope(scope: RunScope) -> None:
    """Make `scope` current for the rest of this asyncio task (one task per run)."""
    _current_scope.set(scope)
