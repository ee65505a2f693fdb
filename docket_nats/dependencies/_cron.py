"""Cron: a perpetual task due at the times a cron expression names."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Self

from cronsim import CronSim

from ._base import current_execution
from ._perpetual import Perpetual

if TYPE_CHECKING:
    from ..execution import Execution
    from ._base import TaskOutcome

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

    `next_time()` is the one place the run times come from (the first run of an
    automatic chain, and every next run), so a test can patch it, as docket's
    users do: `patch.object(Cron, "next_time", side_effect=...)`.
    """

    def __init__(self, expression: str, automatic: bool = True, tz: tzinfo = UTC) -> None:
        super().__init__(automatic=automatic)
        self.expression = VIXIE_KEYWORDS.get(expression, expression)
        self.tz = tz
        # The last time next_time() gave: the next one is later still.
        self._last: datetime | None = None
        CronSim(self.expression, datetime.now(tz))  # a bad expression fails where declared

    async def __aenter__(self) -> Self:
        cron = await super().__aenter__()
        # A run's next time comes after the tick it was due at (or after now, if
        # it ran late), never from a clock that reads slightly early: one run per tick.
        cron._last = current_execution.get().when
        return cron

    def next_time(self, after: datetime | None = None) -> datetime:
        """The next matching time: strictly after `after` if given; otherwise
        after now and after the time this Cron gave last, so that successive
        calls give successive times (as docket's iterator does)."""
        if after is None:
            now = datetime.now(UTC)
            after = now if self._last is None else max(now, self._last)
            self._last = next(CronSim(self.expression, after.astimezone(self.tz)))
            return self._last
        return next(CronSim(self.expression, after.astimezone(self.tz)))

    @property
    def initial_when(self) -> datetime:
        return self.next_time()

    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        self.at(self.next_time())
        return await super().on_complete(execution, outcome)
