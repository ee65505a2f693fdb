"""What the layers below `Docket` need of it: its names, connection and settings.

State, results, progress, dead letters and executions take a `DocketContext`
rather than the Docket itself, so they never depend on the producer API above
them. A Docket makes its context once, when it is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from ._connection import Connection
from ._strike_list import StrikeList
from ._subjects import Names
from ._types import TaskFunction


# Compared and hashed by identity (it keys per-docket caches, weakly).
@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class DocketContext:
    name: str
    names: Names
    connection: Connection
    replicas: int
    execution_ttl: timedelta
    allow_pickle: bool
    # The Docket's task registry itself (registering later shows here too).
    tasks: Mapping[str, TaskFunction]
    strike_list: StrikeList


class HasContext(Protocol):
    """A Docket, as public signatures that take "a docket" accept it."""

    @property
    def context(self) -> DocketContext: ...


def context_of(docket: DocketContext | HasContext) -> DocketContext:
    return docket if isinstance(docket, DocketContext) else docket.context
