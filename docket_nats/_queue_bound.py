"""The work stream's admission limit: `add()` refuses a task with `QueueFull`
when the stream holds `max_queued_tasks` messages or `max_queued_bytes` bytes.

The server cannot enforce it for us (docs/architecture.md, "The work stream is
bounded by admission"): a stream with message schedules refuses discard "new",
and discard "old" would drop live tasks. So each producer counts: the stream's
message and byte counts from a stream-info read, refreshed in the background at
most every `REFRESH_INTERVAL`, plus the adds this producer admitted since that
read began. Under the limit, admitting costs no I/O (`add()` stays one publish);
at or over it by this estimate, the producer reads the stream again (unless its
last read is younger than `REFRESH_INTERVAL`) before refusing, so workers that
drained it are seen. Adds of other producers are seen at the next read: with
several producers the bound is soft by what they add within one interval.
An admitted add the server then refuses (its key is taken) stays counted until
the next read: the estimate errs towards refusing, never towards admitting.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ._connection import Connection

logger = logging.getLogger("docket_nats.queue_bound")

# How stale the stream's counts may be on the hot path.
REFRESH_INTERVAL = 0.25
# How long a refusal may wait for a fresh read (add() answers within a second).
READ_TIMEOUT = 0.5


class QueueFull(Exception):
    """`add()` refused a task: the work stream is at one of its limits.

    `limit` names the Docket option (`max_queued_tasks` or `max_queued_bytes`),
    `maximum` its value and `current` the count that reached it.
    """

    def __init__(self, stream: str, limit: str, maximum: int, current: int) -> None:
        super().__init__(
            f"the work stream {stream} is full: {current:,} "
            f"{'tasks' if limit == 'max_queued_tasks' else 'bytes'} queued or scheduled, "
            f"{limit}={maximum:,}"
        )
        self.limit = limit
        self.maximum = maximum
        self.current = current


@dataclass(frozen=True)
class QueueLimits:
    """`Docket(max_queued_tasks=..., max_queued_bytes=...)`: scheduled and
    queued tasks together (running ones stay in the stream until acked)."""

    max_queued_tasks: int = 10_000_000
    max_queued_bytes: int = 8 * 1024**3


class QueueBound:
    """One producer's admission count for one work stream (see the module doc)."""

    def __init__(self, connection: Connection, stream: str, limits: QueueLimits) -> None:
        self.connection = connection
        self.stream = stream
        self.limits = limits
        # The last read's counts, and this producer's admitted adds since it began.
        self._messages = 0
        self._bytes = 0
        self._adds = 0
        self._added_bytes = 0
        self._read_began = float("-inf")  # loop time; -inf: never read
        self._reading: asyncio.Task[None] | None = None
        # The connection's loop, kept (asyncio.get_running_loop() makes a
        # getpid() system call per add on CPython 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind to the running loop and read the stream once (the Docket's
        `async with`), so a producer's first adds see the others' tasks."""
        self._loop = asyncio.get_running_loop()
        await self._read(self._loop.time())

    def admit(self, size: int) -> bool:
        """Count a task of `size` bytes in; False when, by the estimate, it would
        not fit (then `confirm` decides). No I/O: at most it starts a read."""
        loop = self._loop
        if loop is None:  # not connected: the publish itself says so
            return True
        self._read_if_stale(loop)
        if (
            self._messages + self._adds >= self.limits.max_queued_tasks
            or self._bytes + self._added_bytes + size > self.limits.max_queued_bytes
        ):
            return False
        self._count_in(size)
        return True

    async def confirm(self, size: int) -> None:
        """A task the estimate refused: read the stream again (unless the last
        read is fresh) and count it in, or raise QueueFull."""
        # One read at most (READ_TIMEOUT): the one under way, else a new one
        # unless the last is fresh. A refusal comes within the second.
        self._read_if_stale(asyncio.get_running_loop())
        if self._reading is not None:
            await asyncio.shield(self._reading)
        messages = self._messages + self._adds
        if messages >= self.limits.max_queued_tasks:
            raise QueueFull(self.stream, "max_queued_tasks", self.limits.max_queued_tasks, messages)
        stored = self._bytes + self._added_bytes
        if stored + size > self.limits.max_queued_bytes:
            raise QueueFull(self.stream, "max_queued_bytes", self.limits.max_queued_bytes, stored)
        self._count_in(size)

    def _read_if_stale(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a read of the stream unless one is under way or the last is fresh."""
        if self._reading is None and loop.time() - self._read_began > REFRESH_INTERVAL:
            self._reading = loop.create_task(self._read(loop.time()))

    def _count_in(self, size: int) -> None:
        """An admitted add: counted until a read that began after it."""
        self._adds += 1
        self._added_bytes += size

    async def stop(self) -> None:
        self._loop = None
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def _read(self, began: float) -> None:
        adds, added_bytes = self._adds, self._added_bytes
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                info = await self.connection.js.stream_info(self.stream)
        except Exception as error:  # keep the last counts; the next add asks again
            logger.warning("could not read the work stream's size: %r", error)
        else:
            # Adds admitted before the read began may be in the server's count
            # too: counted twice until the next read, erring towards refusing.
            self._messages, self._bytes = info.state.messages, info.state.bytes
            self._adds -= adds
            self._added_bytes -= added_bytes
        finally:
            self._read_began = began
            self._reading = None
