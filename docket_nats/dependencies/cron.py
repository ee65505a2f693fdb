"""Cron: a perpetual task due at the times a cron expression names."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from cronsim import CronSim

from .perpetual import Perpetual

if TYPE_CHECKING:
    from ..execution import Execution
    from .base import TaskOutcome

VIXIE_KEYWORDS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class Cron(Perpetual):
    """Run this task at the times of a cron expression (docket's Cron).

    Args:
        expression: Five fields (minute hour day month weekday), six with a
            leading seconds field, or a Vixie keyword (@hourly, @daily, ...).
        automatic: Every worker makes sure the chain exists (default True). The
            key is the function's name, so each tick runs once across all workers.
        tz: The time zone the expression is read in (daylight saving included).
    """

    def __init__(self, expression: str, automatic: bool = True, tz: tzinfo = UTC) -> None:
        super().__init__(automatic=automatic)
        self.expression = VIXIE_KEYWORDS.get(expression, expression)
        self.tz = tz
        CronSim(self.expression, datetime.now(tz))  # a bad expression fails where declared

    def next_time(self, after: datetime | None = None) -> datetime:
        """The first matching time strictly after `after` (default: now)."""
        start = (after or datetime.now(UTC)).astimezone(self.tz)
        return next(CronSim(self.expression, start))

    @property
    def initial_when(self) -> datetime:
        return self.next_time()

    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        # From the tick this run was due at (or now, if it ran late), never
        # from a clock that reads slightly early: one run per tick.
        self.at(self.next_time(max(datetime.now(UTC), execution.when)))
        return await super().on_complete(execution, outcome)
