"""`Depends(function)`: a function's result as an argument, resolved once per run.

The function may be sync or async, return a value or a context manager, or be a
(sync or async) generator: whatever it yields is the value, and the code after
the `yield` runs when the task is over, also when it failed. Its own parameters
may declare dependencies (`CurrentExecution()`, `TaskArgument()`, other
`Depends(...)`), resolved first. Within one run, each function (with the same
bindings) is called once and its value shared.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Hashable
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from typing import Any, TypeVar, cast, overload

from .base import Dependency
from .plans import plan_for
from .scope import RunScope, current_scope

R = TypeVar("R")

DependencyFunction = Callable[
    ..., R | Awaitable[R] | AbstractContextManager[R] | AbstractAsyncContextManager[R]
]

_MISSING = object()


class _Depends(Dependency):
    supplies_value = True

    def __init__(self, dependency: Callable[..., Any], bindings: dict[str, Any]) -> None:
        self.dependency = dependency
        self.bindings = bindings
        self.cache_key: Hashable = (
            dependency
            if not bindings
            else (dependency, tuple((name, _identity(bindings[name])) for name in sorted(bindings)))
        )

    async def __aenter__(self) -> Any:
        scope = current_scope()
        value = scope.cache.get(self.cache_key, _MISSING)
        if value is not _MISSING:
            return value
        value = await self._produce(scope)
        scope.cache[self.cache_key] = value
        return value

    async def _produce(self, scope: RunScope) -> Any:
        plan = plan_for(self.dependency)
        arguments: dict[str, Any] = {}
        for name, dependency in plan.parameters.items():
            if name not in self.bindings:
                arguments[name] = await scope.enter(dependency.for_parameter(name))
        for name, value in self.bindings.items():
            if isinstance(value, Dependency):
                arguments[name] = await scope.enter(value.for_parameter(name))
            else:
                arguments[name] = value
        return await call_and_enter(self.dependency, arguments, scope.stack)


async def call_and_enter(
    function: Callable[..., Any], arguments: dict[str, Any], stack: AsyncExitStack
) -> Any:
    """Call a dependency function and return its value; whatever must be torn
    down afterwards (a context manager, a generator's rest) goes on `stack`."""
    kind = plan_for(function).kind
    if kind == "async_generator":
        return await stack.enter_async_context(asynccontextmanager(function)(**arguments))
    if kind == "generator":
        return stack.enter_context(contextmanager(function)(**arguments))
    produced = function(**arguments)
    if isinstance(produced, AbstractAsyncContextManager):
        return await stack.enter_async_context(cast(AbstractAsyncContextManager[Any], produced))
    if isinstance(produced, AbstractContextManager):
        return stack.enter_context(cast(AbstractContextManager[Any], produced))
    if inspect.isawaitable(produced):
        return await produced
    return produced


def _identity(value: Any) -> Hashable:
    """Bindings share a cached value only when they are the same (not merely equal)."""
    if isinstance(value, _Depends):
        return value.cache_key
    if isinstance(value, Dependency):
        return ("dependency", id(value))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    kind = cast("type[object]", type(value))  # 1, 1.0 and True are equal but distinct arguments
    return ("value", kind, value)


@overload
def Depends(dependency: Callable[..., AbstractAsyncContextManager[R]], **bindings: Any) -> R: ...
@overload
def Depends(dependency: Callable[..., AbstractContextManager[R]], **bindings: Any) -> R: ...
@overload
def Depends(dependency: Callable[..., AsyncGenerator[R]], **bindings: Any) -> R: ...
@overload
def Depends(dependency: Callable[..., Generator[R]], **bindings: Any) -> R: ...
@overload
def Depends(dependency: Callable[..., Awaitable[R]], **bindings: Any) -> R: ...
@overload
def Depends(dependency: Callable[..., R], **bindings: Any) -> R: ...
def Depends(dependency: Callable[..., Any], **bindings: Any) -> Any:
    """A function's result as a task argument (see the module docstring).

    Keyword `bindings` pass arguments to the function from where it is declared;
    a dependency among them (`TaskArgument("id")`, `Depends(...)`) resolves first.
    """
    return _Depends(dependency, bindings)
