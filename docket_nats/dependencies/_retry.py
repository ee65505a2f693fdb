"""Retry and ExponentialRetry: run a failed task again, durably.

The next attempt is published as a scheduled message (attempt + 1) before the
failed run is acked, so a worker that dies during the delay loses nothing: the
server holds the retry and any worker runs it.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn, Self

from .._work_stream import reschedule
from ._base import FailureHandler, TaskOutcome, current_execution, describe, format_duration

if TYPE_CHECKING:
    from ..execution import Execution

logger = logging.getLogger("docket_nats.dependencies")


class ForcedRetry(Exception):
    """Raised by `Retry.after` / `Retry.at`: retry this run although it did not fail."""


class Retry(FailureHandler["Retry"]):
    """Retry a failed task `attempts` times in all (None: until it succeeds).

    The injected Retry shows `attempt` (1 for the first run).
    """

    def __init__(self, attempts: int | None = 1, delay: timedelta = timedelta(0)) -> None:
        self.attempts = attempts
        self.delay = delay
        self.attempt = 1

    @classmethod
    def forever(cls, delay: timedelta = timedelta(0)) -> Retry:
        return cls(attempts=None, delay=delay)

    async def __aenter__(self) -> Self:
        retry = copy.copy(self)
        retry.attempt = current_execution.get().attempt
        return retry

    def after(self, delay: timedelta) -> NoReturn:
        """End this run and retry it after `delay` (counts as an attempt)."""
        self.delay = delay
        raise ForcedRetry()

    def at(self, when: datetime) -> NoReturn:
        """End this run and retry it at `when`."""
        self.after(max(timedelta(0), when - datetime.now(UTC)))

    def in_(self, delay: timedelta) -> NoReturn:
        """Deprecated spelling of `after`."""
        self.after(delay)

    async def handle_failure(self, execution: Execution, outcome: TaskOutcome) -> bool:
        if self.attempts is not None and execution.attempt >= self.attempts:
            return False
        when = datetime.now(UTC) + self.delay
        handed_over = await reschedule(execution, when, execution.attempt + 1)
        took = format_duration(outcome.duration.total_seconds())
        of = "" if self.attempts is None else f" of {self.attempts}"
        logger.error(
            "↩ [%s] %s failed (attempt %d%s)",
            took,
            describe(execution),
            execution.attempt,
            of,
            exc_info=outcome.exception,
        )
        if not handed_over:
            logger.info("↬ %s superseded: not retrying, its key was replaced", describe(execution))
            return True
        logger.info(
            "↫ %s retrying in %s (attempt %d%s)",
            describe(execution),
            format_duration(self.delay.total_seconds()),
            execution.attempt + 1,
            of,
        )
        return True


class ExponentialRetry(Retry):
    """Retry with a delay that doubles per attempt, from `minimum_delay` up to `maximum_delay`."""

    def __init__(
        self,
        attempts: int | None = 1,
        minimum_delay: timedelta = timedelta(seconds=1),
        maximum_delay: timedelta = timedelta(seconds=64),
    ) -> None:
        super().__init__(attempts=attempts, delay=minimum_delay)
        self.minimum_delay = minimum_delay
        self.maximum_delay = maximum_delay

    @classmethod
    def forever(
        cls,
        delay: timedelta = timedelta(seconds=1),
        maximum_delay: timedelta = timedelta(seconds=64),
    ) -> ExponentialRetry:
        return cls(attempts=None, minimum_delay=delay, maximum_delay=maximum_delay)

    async def __aenter__(self) -> Self:
        retry = await super().__aenter__()
        # Float seconds: a large attempt number saturates instead of overflowing.
        seconds = self.minimum_delay.total_seconds() * 2.0 ** min(retry.attempt - 1, 1000)
        retry.delay = min(self.maximum_delay, timedelta(seconds=min(seconds, 1e9)))
        return retry
