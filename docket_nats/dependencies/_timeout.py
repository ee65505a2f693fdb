"""Timeout: cancel the task body at a deadline the task may extend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from ._base import Runtime, describe

if TYPE_CHECKING:
    from ..execution import Execution

logger = logging.getLogger("docket_nats.dependencies")


class Timeout(Runtime["Timeout"]):
    """Cancel the task if it runs longer than `base` (docket's Timeout).

    The injected Timeout can `extend(by)` the deadline (by `base` when no
    duration is given) and tells the `remaining()` time. A timed-out run fails
    with `TimeoutError`, which a Retry retries. A sync task's thread cannot be
    stopped: the run ends at the deadline, the thread finishes on its own.
    """

    def __init__(self, base: timedelta) -> None:
        self.base = base
        self._deadline = time.monotonic() + base.total_seconds()

    async def __aenter__(self) -> Self:
        return type(self)(self.base)

    def start(self) -> None:
        self._deadline = time.monotonic() + self.base.total_seconds()

    def expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def remaining(self) -> timedelta:
        return timedelta(seconds=self._deadline - time.monotonic())

    def extend(self, by: timedelta | None = None) -> None:
        self._deadline += (by if by is not None else self.base).total_seconds()

    async def run(
        self,
        execution: Execution,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self.start()
        body = asyncio.ensure_future(function(*args, **kwargs))
        try:
            # Wake at the deadline, then look again: the task may have extended it.
            while (remaining := self._deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait({body}, timeout=remaining)
                if done:
                    return body.result()
        except BaseException:  # this run is being cancelled: take the body with it
            await _stop(body, None)
            raise
        if body.done():
            return body.result()
        reason = f"{describe(execution)} exceeded its timeout of {self.base.total_seconds()}s"
        await _stop(body, reason)
        logger.warning("⏱ %s", reason)
        raise TimeoutError(reason)


async def _stop(body: asyncio.Future[Any], reason: str | None) -> None:
    """Cancel the body and wait until it is over (its own error is not ours)."""
    body.cancel(reason)
    await asyncio.wait({body})
    if not body.cancelled():
        body.exception()  # retrieved, so asyncio does not report it as lost
