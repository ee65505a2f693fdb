"""RUNNING records written late: only for runs still going after RUNNING_DELAY.

Most tasks are shorter, and their one final write says all, so a short task
costs one publish, not two. A run's final write forgets it here first; progress
reported meanwhile writes RUNNING at once (readers never see progress for a run
that is not RUNNING). Runs are known by an identity (`id(execution)`) and the
write to make, so this sits below the executions it times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# A run shows as RUNNING once it has run this long (seconds).
RUNNING_DELAY = 0.02

Write = Callable[[], Awaitable[None]]

# Runs of this process whose RUNNING record is not written yet, oldest first:
# identity -> (the write, monotonic start). One ticker writes the ones still
# going after RUNNING_DELAY. Removing an entry and enqueueing its publish happen
# in one step (nats-py queues a publish before its first await), so RUNNING can
# never land after the end.
_waiting: dict[int, tuple[Write, float]] = {}
_ticker: asyncio.Task[None] | None = None


def await_running(identity: int, write: Write) -> None:
    """A run started: make `write` RUNNING_DELAY from now unless it ends first."""
    global _ticker
    _waiting[identity] = (write, time.monotonic())
    if _ticker is not None and not _ticker.done():
        if len(_waiting) > 1:
            return  # the common case: the ticker of this loop is alive and busy
        if _ticker.get_loop() is asyncio.get_running_loop():
            return
    # (None yet, or the ticker of a loop that is gone: start one on this loop.)
    _ticker = asyncio.get_running_loop().create_task(_tick())


def forget(identity: int) -> None:
    """The run ended (or never ran): its RUNNING record is not wanted any more."""
    _waiting.pop(identity, None)


async def report_running(identity: int) -> None:
    """Progress implies RUNNING: write it now if it is still waiting."""
    entry = _waiting.pop(identity, None)
    if entry is not None:
        await entry[0]()


async def _tick() -> None:
    global _ticker
    try:
        while _waiting:
            await asyncio.sleep(RUNNING_DELAY)
            due = time.monotonic() - RUNNING_DELAY
            for identity, (_, since) in list(_waiting.items()):
                if since > due:
                    break
                entry = _waiting.pop(identity, None)
                if entry is not None:  # else it ended while we wrote others
                    await entry[0]()
    finally:
        _ticker = None
