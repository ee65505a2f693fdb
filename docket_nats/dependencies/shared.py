"""`Shared(factory)`: one value per worker, made on first use, torn down at stop.

Where `Depends(f)` calls `f` for every run, `Shared(f)` calls it once per
Worker (the first run that asks for it) and hands every later run on that
worker the same value: connection pools, loaded configuration, clients. The
value is keyed by the factory itself, so `Shared(create_pool)` written in two
tasks is one pool. The factory may be sync or async, return a value or a
context manager, or be a generator; what it must clean up is cleaned up when
the worker stops, after its last task.

A factory's own parameters may ask for what lives as long as it does: other
`Shared(...)` values, `CurrentDocket()`, `CurrentWorker()`. Anything tied to
one run (`TaskArgument`, `CurrentExecution`, `Depends`, ...) is refused with a
TypeError: the value would silently keep the first run's view.

A factory that raises caches nothing: the run that asked fails (naming the
parameter, like any dependency), and the next run tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack
from typing import Any, TypeVar, overload

from .base import Dependency, current_worker
from .contextual import _CurrentDocket, _CurrentWorker  # pyright: ignore[reportPrivateUsage]
from .functional import call_and_enter
from .plans import plan_for

R = TypeVar("R")


class SharedValues:
    """One worker's shared values and the teardown they need (see the module doc)."""

    def __init__(self) -> None:
        self._values: dict[Callable[..., Any], Any] = {}
        self._locks: dict[Callable[..., Any], asyncio.Lock] = {}
        # Which asyncio task is making each value: a factory that (through
        # other Shared values) needs itself would otherwise wait on itself forever.
        self._making: dict[Callable[..., Any], asyncio.Task[Any] | None] = {}
        self._stack = AsyncExitStack()
        self._closed = False

    async def get(self, factory: Callable[..., Any]) -> Any:
        if factory in self._values:
            return self._values[factory]
        if factory in self._making and self._making[factory] is asyncio.current_task():
            raise RuntimeError(f"Shared({factory.__qualname__}) depends on itself")
        lock = self._locks.setdefault(factory, asyncio.Lock())
        async with lock:  # two first runs at once still make one value
            if factory in self._values:
                return self._values[factory]
            if self._closed:
                raise RuntimeError("the worker has stopped: its Shared values are gone")
            self._making[factory] = asyncio.current_task()
            try:
                value = await call_and_enter(factory, await _arguments(factory), self._stack)
            finally:
                del self._making[factory]
            self._values[factory] = value
            return value

    async def aclose(self) -> None:
        """Tear the values down, newest first (the worker's tasks are over)."""
        self._closed = True
        self._values.clear()
        await self._stack.aclose()


async def _arguments(factory: Callable[..., Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for name, declared in plan_for(factory).parameters.items():
        dependency = declared.for_parameter(name)
        if not isinstance(dependency, _Shared | _CurrentDocket | _CurrentWorker):
            raise TypeError(
                f"Shared({factory.__qualname__}): parameter {name!r} asks for "
                f"{type(dependency).__name__.lstrip('_')}, which belongs to one run; "
                "a Shared factory may ask only for Shared(...), CurrentDocket() or "
                "CurrentWorker()"
            )
        arguments[name] = await dependency.__aenter__()
    return arguments


class _Shared(Dependency):
    supplies_value = True

    def __init__(self, factory: Callable[..., Any]) -> None:
        self.factory = factory

    async def __aenter__(self) -> Any:
        try:
            worker = current_worker.get()
        except LookupError:
            raise RuntimeError(
                f"Shared({self.factory.__qualname__}) can only be resolved on a worker"
            ) from None
        return await worker.shared_values.get(self.factory)


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
    return _Shared(factory)
