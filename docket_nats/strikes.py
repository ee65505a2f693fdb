"""Strike rules: conditions under which tasks are refused at add() and before running.

This first version holds only in-process conditions (used by `Worker.run_at_most`);
rules replicated through a JetStream KV bucket build on the same `is_struck` check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from .execution import Execution
    from .subjects import Names

Condition = Callable[["Execution"], bool]


class StrikeList:
    """The rules every Docket and Worker consults before adding or running a task."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self._conditions: list[Condition] = []

    async def start(self, js: JetStreamContext) -> None:
        """Load the current rules; afterwards keep them current."""

    async def stop(self) -> None:
        """Stop following the rules."""

    def add_condition(self, condition: Condition) -> None:
        self._conditions.append(condition)

    def remove_condition(self, condition: Condition) -> None:
        self._conditions.remove(condition)

    def is_struck(self, execution: Execution) -> bool:
        return any(condition(execution) for condition in self._conditions)
