"""`Shared(factory)`: one value per worker, made on first use, torn down at stop.

The resolution is uncalled-for's `Shared` within its `SharedContext`, as in
docket (a bare generator function is wrapped as a context manager first, see
`functional.as_factory`). Where
`Depends(f)` calls `f` for every run, `Shared(f)` calls it once per Worker (the
first run that asks for it) and hands every later run on that worker the same
value: connection pools, loaded configuration, clients. The value is keyed by
the factory itself, so `Shared(create_pool)` written in two tasks is one pool.
What the factory must clean up is cleaned up when the worker stops.

A factory's own parameters may ask for other dependencies, `Depends(...)`
included, as docket allows; they resolve in the run that first makes the
value, so a per-run one (`TaskArgument`, `CurrentExecution`) keeps that run's
view. A factory that raises caches nothing: the next run tries again.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack
from typing import Any, TypeVar, overload

import uncalled_for
from uncalled_for import SharedContext

from ._functional import as_factory

R = TypeVar("R")

__all__ = ["Shared", "SharedContext", "WorkerShared"]


@overload
def Shared(factory: Callable[..., AbstractAsyncContextManager[R]]) -> R: ...
@overload
def Shared(factory: Callable[..., AbstractContextManager[R]]) -> R: ...
@overload
def Shared(factory: Callable[..., AsyncGenerator[R]]) -> R: ...
@overload
def Shared(factory: Callable[..., Generator[R]]) -> R: ...
@overload
def Shared(factory: Callable[..., Awaitable[R]]) -> R: ...
@overload
def Shared(factory: Callable[..., R]) -> R: ...
def Shared(factory: Callable[..., Any]) -> Any:
    """The value `factory` makes, once per worker (see the module docstring)."""
    return uncalled_for.Shared(as_factory(factory))


class WorkerShared:
    """One worker's `SharedContext`, made current in each run of that worker.

    The context is entered in a `contextvars.Context` of its own rather than
    the caller's: a Worker may be entered and exited from different asyncio
    tasks (fixtures do), where resetting the caller's variables would fail.
    Each run then points `SharedContext`'s variables at this worker's values.
    """

    def __init__(self) -> None:
        self._context = contextvars.Context()
        self._shared = SharedContext()
        self._values: tuple[dict[Any, Any], asyncio.Lock, AsyncExitStack] | None = None

    async def open(self) -> None:
        await asyncio.create_task(self._shared.__aenter__(), context=self._context)
        self._values = (
            self._context[SharedContext.resolved],
            self._context[SharedContext.lock],
            self._context[SharedContext.stack],
        )

    def activate(self) -> None:
        """Make this worker's shared values the ones the current run sees."""
        if self._values is None:
            return  # never opened: a Shared dependency then fails the run
        resolved, lock, stack = self._values
        SharedContext.resolved.set(resolved)
        SharedContext.lock.set(lock)
        SharedContext.stack.set(stack)

    async def aclose(self) -> None:
        """Tear the values down, newest first (the worker's tasks are over)."""
        if self._values is None:
            return
        self._values = None
        await asyncio.create_task(self._shared.__aexit__(None, None, None), context=self._context)
