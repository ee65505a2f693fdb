"""Assertions for users' tests about what a docket holds (docket's helpers).

Built on `Docket.snapshot()`: "scheduled" means not yet running, whether due
later (SCHEDULED) or already due (QUEUED), as in docket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .docket import Docket
from .execution import Execution

# How many waiting tasks the assertions look at; tests rarely hold more.
LISTING_LIMIT = 10_000

TaskRef = str | Callable[..., Any]


def _name(function: TaskRef) -> str:
    return function if isinstance(function, str) else function.__name__


def _matches(
    execution: Execution,
    function: TaskRef,
    args: tuple[Any, ...] | None,
    kwargs: dict[str, Any] | None,
    key: str | None,
) -> bool:
    if execution.function_name != _name(function):
        return False
    if key is not None and execution.key != key:
        return False
    if args is not None and execution.args != args:
        return False
    # kwargs match as a subset: the named ones must be there with these values.
    return kwargs is None or all(
        name in execution.kwargs and execution.kwargs[name] == value
        for name, value in kwargs.items()
    )


def _describe(execution: Execution) -> str:
    return (
        f"  - {execution.function_name}(args={execution.args!r}, "
        f"kwargs={execution.kwargs!r}, key={execution.key!r})"
    )


def _criteria(args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None, key: str | None) -> str:
    given = [
        f"{label}={value!r}"
        for label, value in (("args", args), ("kwargs", kwargs), ("key", key))
        if value is not None
    ]
    return ", ".join(given) or "any arguments"


async def _waiting(docket: Docket) -> list[Execution]:
    return list((await docket.snapshot(limit=LISTING_LIMIT)).future)


async def assert_task_scheduled(
    docket: Docket,
    function: TaskRef,
    *,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    key: str | None = None,
) -> None:
    """Fail unless a waiting task matches (args exactly, kwargs as a subset)."""
    waiting = await _waiting(docket)
    if any(_matches(execution, function, args, kwargs, key) for execution in waiting):
        return
    if not waiting:
        raise AssertionError(f"Task {_name(function)} not found: no tasks scheduled on docket")
    listing = "\n".join(_describe(execution) for execution in waiting)
    raise AssertionError(
        f"Task {_name(function)} not found with {_criteria(args, kwargs, key)}\n\n"
        f"Scheduled tasks:\n{listing}"
    )


async def assert_task_not_scheduled(
    docket: Docket,
    function: TaskRef,
    *,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    key: str | None = None,
) -> None:
    """Fail if a waiting task matches."""
    for execution in await _waiting(docket):
        if _matches(execution, function, args, kwargs, key):
            raise AssertionError(
                f"Task {_name(function)} found but should not be scheduled\n"
                f"Found:\n{_describe(execution)}"
            )


async def assert_task_count(docket: Docket, function: TaskRef | None = None, *, count: int) -> None:
    """Fail unless `count` tasks (of `function`, or all) are waiting."""
    if function is None:
        snapshot = await docket.snapshot(limit=0)
        actual, described = snapshot.scheduled_count + snapshot.queued_count, "all tasks"
    else:
        name = _name(function)
        actual = sum(1 for e in await _waiting(docket) if e.function_name == name)
        described = f"tasks for {name}"
    if actual != count:
        raise AssertionError(f"Expected {count} {described}, found {actual}")


async def assert_no_tasks(docket: Docket) -> None:
    """Fail if any task is waiting, listing the ones that are."""
    waiting = await _waiting(docket)
    if waiting:
        listing = "\n".join(_describe(execution) for execution in waiting)
        raise AssertionError(
            f"Expected no tasks, found {len(waiting)} task(s) scheduled:\n{listing}"
        )
