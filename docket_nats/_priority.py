"""Priority: how urgent a task is, per function (a parameter default) or per call.

An extension of docket's API (docket has no priorities). Three levels, LOW,
NORMAL (the default) and HIGH; each has its own run subject and pull consumer
(`_subjects.py`), so a backlog of one level never sits in front of another in
JetStream's stream order, and a worker with a free run slot starts the highest
level it holds, except that one start in `STARVATION_SHARE` goes to the oldest
waiting task of any level (worker/_mailbox.py), so low work is never starved.

    async def send_receipt(order: int, priority: Priority = Priority.HIGH): ...
    await docket.add(send_receipt)(42)                           # HIGH (the default)
    await docket.add(send_receipt, priority=Priority.LOW)(42)    # LOW this once

The task receives the Priority its run was published with.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

from uncalled_for import Dependency

from ._signatures import get_signature
from ._subjects import HIGH_LEVEL, LOW_LEVEL, NORMAL_LEVEL

PriorityName = Literal["low", "normal", "high"]
_LEVELS: dict[str, int] = {"low": LOW_LEVEL, "normal": NORMAL_LEVEL, "high": HIGH_LEVEL}


class Priority(Dependency["Priority"]):
    """A task's priority: `Priority.LOW`, `Priority.NORMAL` or `Priority.HIGH`
    (or `Priority("low" | "normal" | "high")`). Ordered: LOW < NORMAL < HIGH."""

    single = True  # one per task: two would contradict each other

    LOW: ClassVar[Priority]
    NORMAL: ClassVar[Priority]
    HIGH: ClassVar[Priority]

    __slots__ = ("level", "name")

    def __init__(self, name: PriorityName) -> None:
        try:
            self.level = _LEVELS[name]
        except KeyError:
            raise ValueError(f"unknown priority {name!r}: use 'low', 'normal' or 'high'") from None
        self.name: PriorityName = name

    async def __aenter__(self) -> Priority:
        # The run's own priority (a per-call override included); this default
        # only outside a worker's run.
        return current_priority.get(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Priority) and other.level == self.level

    def __lt__(self, other: Priority) -> bool:
        return self.level < other.level

    def __hash__(self) -> int:
        return hash(self.level)

    def __repr__(self) -> str:
        return f"Priority.{self.name.upper()}"


Priority.LOW = Priority("low")
Priority.NORMAL = Priority("normal")
Priority.HIGH = Priority("high")
_BY_LEVEL = {
    priority.level: priority for priority in (Priority.LOW, Priority.NORMAL, Priority.HIGH)
}

# Set by the worker for each run (its own asyncio task) from the message's subject.
current_priority: ContextVar[Priority] = ContextVar("current_priority")

_declared: dict[Callable[..., Any], Priority] = {}


def priority_of(function: Callable[..., Any]) -> Priority:
    """The priority `function` declares as a parameter default (NORMAL if none)."""
    found = _declared.get(function)
    if found is None:
        found = Priority.NORMAL
        for parameter in get_signature(function).parameters.values():
            if isinstance(parameter.default, Priority):
                found = parameter.default
                break
        _declared[function] = found
    return found


def priority_at(level: int) -> Priority:
    """The Priority of a level (as `_subjects.Names.level_of` reads it from a subject)."""
    return _BY_LEVEL[level]


__all__ = ["Priority", "PriorityName", "current_priority", "priority_at", "priority_of"]
