"""Worker-scoped setup and teardown that a Dependency class asks for (docket's hook).

A Dependency class may declare a classmethod `worker_lifecycle(docket, worker)`
returning an async context manager: background work the class needs for as
long as a worker runs (a subscriber, housekeeping). The worker enters each such
class's hook once around its run, whichever tasks use it and however often; a
hook that returns None instead of a context manager is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from ..dependencies._base import Dependency
from ..dependencies._plans import plan_for

if TYPE_CHECKING:
    from ..docket import Docket
    from ..execution import TaskFunction


def lifecycle_classes(
    tasks: Iterable[TaskFunction], worker_dependencies: Mapping[str, Dependency[Any]]
) -> list[type[Dependency[Any]]]:
    """The classes with a `worker_lifecycle` hook, each once, in first-use order."""
    found: dict[type[Dependency[Any]], None] = {}

    def consider(dependency: Any) -> None:
        if isinstance(dependency, Dependency):
            cls = type(cast(Dependency[Any], dependency))
            if hasattr(cls, "worker_lifecycle"):
                found.setdefault(cls, None)

    for function in dict.fromkeys(tasks):
        for _, dependency in plan_for(function).declared():
            consider(dependency)
    for dependency in worker_dependencies.values():
        consider(dependency)
    return list(found)


@asynccontextmanager
async def worker_lifecycles(
    docket: Docket, worker: Any, worker_dependencies: Mapping[str, Dependency[Any]]
) -> AsyncGenerator[None]:
    """Enter the hooks of the docket's tasks and the worker's dependencies around a run.

    `worker` is only handed to the hooks (docket's `worker_lifecycle(docket, worker)`).
    """
    async with AsyncExitStack() as stack:
        for cls in lifecycle_classes(docket.tasks.values(), worker_dependencies):
            hook: Any = getattr(cls, "worker_lifecycle")  # noqa: B009 (not declared on Dependency)
            manager = hook(docket, worker)
            if isinstance(manager, AbstractAsyncContextManager):
                await stack.enter_async_context(cast(AbstractAsyncContextManager[Any], manager))
        yield
