"""`Depends(function)`: a function's result as an argument, resolved once per run.

The resolution is uncalled-for's, as in docket. The function may be sync or
async, return a value or a context manager, or be a (sync or async) generator:
whatever it yields is the value, and the code after the `yield` runs when the
task is over, also when it failed. Its own parameters may declare dependencies
(`CurrentExecution()`, `TaskArgument()`, `CallArgument()`, other
`Depends(...)`), resolved first. Within one run, each function (with the same
bindings) is called once and its value shared.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any, TypeVar, cast, overload

import uncalled_for
from uncalled_for import DependencyFactory

R = TypeVar("R")

# docket's name for what `Depends` accepts: a function returning R, an
# awaitable of R, or a (sync or async) context manager of R.
DependencyFunction = DependencyFactory[R]

__all__ = ["DependencyFunction", "Depends", "as_factory"]

_wrapped: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)


def as_factory(function: Callable[..., Any]) -> Callable[..., Any]:
    """A bare generator function as the context manager uncalled-for expects.

    uncalled-for (and so docket) enters what a factory returns only when it is a
    context manager; a plain `def f(): yield x` would inject the generator
    object. Wrapping it here makes it a setup/teardown factory. The wrapper is
    made once per function, because uncalled-for keys its per-run cache and
    `Shared` values by the factory: `Depends(f)` twice must stay one value.
    """
    if inspect.isasyncgenfunction(function):
        make: Callable[..., Any] = asynccontextmanager
    elif inspect.isgeneratorfunction(function):
        make = contextmanager
    else:
        return function
    try:
        wrapper = _wrapped.get(function)
    except TypeError:  # not weakly referenceable: wrap each time
        return cast(Callable[..., Any], make(function))
    if wrapper is None:
        wrapper = _wrapped[function] = cast(Callable[..., Any], make(function))
    return wrapper


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
    return uncalled_for.Depends(as_factory(dependency), **bindings)
