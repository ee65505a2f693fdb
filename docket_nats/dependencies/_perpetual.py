"""Perpetual: a task that schedules its own next run, success or failure.

The next run is published before the running message is acked, expecting the
running message to be the key's last (`reschedule` (_work_stream.py)), so the key is never
free in between (no duplicate chain can start) and an add/replace that took the
key meanwhile wins (the chain then ends, superseded). A crash before the ack
means a redelivery, not a lost chain.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from .._work_stream import reschedule
from ._base import CompletionHandler, TaskOutcome, current_execution, describe, format_duration

if TYPE_CHECKING:
    from ..execution import Execution

logger = logging.getLogger("docket_nats.dependencies")


class Perpetual(CompletionHandler["Perpetual"]):
    """Run this task again `every` after each run (docket's Perpetual).

    Args:
        every: The target interval between consecutive runs, due time to due
            time (a run that takes longer than `every` is followed at once).
        automatic: Every worker that starts makes sure one chain of this task
            exists, keyed by the function's name (and re-checks periodically, so a
            severed chain comes back). Automatic tasks take no arguments.
            Cancelling one only pauses it until the next check; strike it to stop it.

    In the task, the injected Perpetual steers the next run: `cancel()`,
    `every = ...`, `perpetuate(*args, **kwargs)`, `after(delay)`, `at(when)`.
    """

    def __init__(self, every: timedelta = timedelta(0), automatic: bool = False) -> None:
        self.every = every
        self.automatic = automatic
        self.cancelled = False
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self._next_when: datetime | None = None

    async def __aenter__(self) -> Self:
        # Each run steers its own copy; the declared default stays as declared.
        execution = current_execution.get()
        perpetual = copy.copy(self)
        perpetual.cancelled = False
        perpetual._next_when = None
        perpetual.args = execution.args
        perpetual.kwargs = dict(execution.kwargs)
        return perpetual

    @property
    def initial_when(self) -> datetime | None:
        """When an automatic chain's first run is due (None: at once)."""
        return None

    def cancel(self) -> None:
        """Do not schedule a next run."""
        self.cancelled = True

    def perpetuate(self, *args: Any, **kwargs: Any) -> None:
        """Call the next run with these arguments."""
        self.args = args
        self.kwargs = kwargs

    def after(self, delay: timedelta) -> None:
        """Schedule the next run `delay` from now."""
        self._next_when = datetime.now(UTC) + delay

    def at(self, when: datetime) -> None:
        """Schedule the next run at `when`."""
        self._next_when = when if when.tzinfo is not None else when.astimezone()

    def next_when(self, execution: Execution, outcome: TaskOutcome) -> datetime:
        if self._next_when is not None:
            return self._next_when
        now = datetime.now(UTC)
        # `every` measures from one due time to the next, so neither the run's
        # length nor how late the server delivered it (its scheduler fires in
        # passes up to 250 ms apart) accumulates into the cadence.
        due = execution.when + self.every
        if due >= now:
            return due
        # Behind by more than an interval (a long run, a worker outage): start
        # the cadence again from this run, as docket does, with no catch-up burst.
        return max(now, now + self.every - outcome.duration)

    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        if self.cancelled:
            return False  # nothing follows; the key frees when this run is acked
        when = self.next_when(execution, outcome)
        try:
            handed_over = await reschedule(execution, when, 1, self.args, self.kwargs)
        except TypeError as error:  # perpetuate() got arguments that cannot be sent
            logger.error("%s cannot be perpetuated: %s", describe(execution), error)
            return False
        took = format_duration(outcome.duration.total_seconds())
        if outcome.exception is not None:
            logger.error("↩ [%s] %s failed", took, describe(execution), exc_info=outcome.exception)
        if not handed_over:
            logger.info(
                "↬ [%s] %s superseded: its key was replaced or cancelled while it ran",
                took,
                describe(execution),
            )
            return True
        logger.info("↫ [%s] %s next at %s", took, describe(execution), when.isoformat())
        return True
