"""Agenda: collect task calls, then scatter them evenly over a time window."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

from .docket import Docket
from .execution import Disposition, Execution, TaskCall, TaskFunction

P = ParamSpec("P")
R = TypeVar("R")

AgendaItem = tuple[TaskFunction | str, tuple[Any, ...], dict[str, Any], str | None]


class Agenda:
    """Task calls to schedule together (docket's Agenda).

        agenda = Agenda()
        for item in items:
            agenda.add(process_item)(item)
        await agenda.scatter(docket, over=timedelta(minutes=50))

    A stable `key` per call makes scattering again idempotent: a key still
    scheduled keeps its first schedule.
    """

    def __init__(self) -> None:
        self._items: list[AgendaItem] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[AgendaItem]:
        return iter(self._items)

    @overload
    def add(
        self, function: Callable[P, Awaitable[R]] | Callable[P, R], key: str | None = None
    ) -> Callable[P, None]: ...

    @overload
    def add(self, function: str, key: str | None = None) -> Callable[..., None]: ...

    def add(self, function: TaskFunction | str, key: str | None = None) -> Callable[..., None]:
        """Collect one call of `function` (a function or a registered task's name)."""

        def collect(*args: Any, **kwargs: Any) -> None:
            self._items.append((function, args, kwargs, key))

        return collect

    def clear(self) -> None:
        self._items.clear()

    async def scatter(
        self,
        docket: Docket,
        over: timedelta,
        start: datetime | None = None,
        jitter: timedelta | None = None,
    ) -> list[Execution]:
        """Schedule the collected calls evenly from `start` (default now) over `over`.

        One call lands in the middle of the window; n calls on n evenly spaced
        points from its start to its end. `jitter` moves each by up to that much
        either way (never before `start`). Unknown task names fail before
        anything is scheduled; the adds themselves are pipelined.
        """
        if over <= timedelta(0):
            raise ValueError("'over' parameter must be a positive duration")
        if not self._items:
            return []
        start = start or datetime.now(UTC)
        count = len(self._items)
        if count == 1:
            times = [start + over / 2]
        else:
            step = over / (count - 1)
            times = [start + step * index for index in range(count)]
        if jitter:
            spread = jitter.total_seconds()
            times = [
                max(start, when + timedelta(seconds=random.uniform(-spread, spread)))
                for when in times
            ]
        calls: list[TaskCall] = []
        for (function, args, kwargs, key), when in zip(self._items, times, strict=True):
            if isinstance(function, str) and function not in docket.tasks:
                raise KeyError(f"task {function!r} is not registered")
            calls.append(
                docket.call(function, when=when, key=key or str(uuid.uuid4()))(*args, **kwargs)
            )
        executions = await docket.add_many(calls)
        failed = [e for e in executions if e.disposition is Disposition.FAILED]
        if failed:
            # docket raises the error, and the calls scheduled before it stay
            # scheduled; the adds here are pipelined, so say which ones did.
            error = failed[0].schedule_exception
            assert error is not None
            scheduled = [e.key for e in executions if e.disposition is Disposition.SCHEDULED]
            error.add_note(
                f"Agenda.scatter: {len(scheduled)} of {len(executions)} calls were scheduled "
                f"(keys: {', '.join(scheduled) or 'none'}); {len(failed)} failed, the first "
                f"being {failed[0].key!r}"
            )
            raise error
        return executions
