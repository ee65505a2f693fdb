"""Progress a running task reports: current / total and a message.

Only the task's own run writes its progress, so the counter lives in memory and
each change is one publish (no ack awaited) of the whole value to the key's
`progress.<key>` entry of the executions bucket: the bucket keeps the latest
value for readers, and subscribers of the subject see every update live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self

import msgspec
from nats.js.errors import NotFoundError

from ._running_writes import report_running
from ._state_records import bucket_stream, progress_subject, read_record
from ._types import ExecutionState, ProgressEvent

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._context import DocketContext


class ProgressRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    current: int | None = None
    total: int = 100
    message: str | None = None
    updated_at: datetime | None = None


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(ProgressRecord).decode


def decode_progress(data: bytes) -> ProgressRecord | None:
    if not data:
        return None
    try:
        return _decode(data)
    except msgspec.DecodeError:
        return None


async def read_progress(docket: DocketContext, key: str) -> ProgressRecord | None:
    try:
        message = await docket.connection.js.get_last_msg(
            bucket_stream(docket.names), progress_subject(docket.names, key)
        )
    except NotFoundError:
        return None
    return decode_progress(message.data or b"")


class ExecutionProgress:
    """The progress of one execution (docket's `ExecutionProgress`).

    As in docket: a fresh one has no `current` and a `total` of 1 until it is
    read; a running task starts at 0 of 100; once the run ends, progress is gone
    (`current` None, `total` 100).
    """

    def __init__(self, docket: DocketContext, key: str, run: int | None = None) -> None:
        self.docket = docket
        self.key = key
        # The identity of the run reporting this progress (worker side), if any:
        # its first report writes its RUNNING record (see _running_writes.py).
        self.run = run
        self.current: int | None = None
        self.total: int = 1
        self.message: str | None = None
        self.updated_at: datetime | None = None

    @classmethod
    async def create(cls, docket: DocketContext, key: str) -> Self:
        """One read from NATS already applied."""
        progress = cls(docket, key)
        await progress.sync()
        return progress

    async def set_total(self, total: int) -> None:
        if total < 1:
            raise ValueError("Total must be at least 1")
        self.total = total
        if self.current is None:
            self.current = 0
        await self._publish()

    async def increment(self, amount: int = 1) -> None:
        if amount < 1:
            raise ValueError("Amount must be at least 1")
        self.current = (self.current or 0) + amount
        await self._publish()

    async def set_message(self, message: str | None) -> None:
        self.message = message
        if self.current is None:
            self.current = 0
        await self._publish()

    async def sync(self) -> None:
        record, progress = await asyncio.gather(
            read_record(self.docket, self.key), read_progress(self.docket, self.key)
        )
        running = record is not None and record.state == ExecutionState.RUNNING.value
        self.apply(progress, running=running)

    def apply(self, record: ProgressRecord | None, running: bool = False) -> None:
        """Take a value read from NATS; `running`: the run is going on right now,
        so nothing reported yet reads as docket's starting point, 0 of 100."""
        if record is None:
            self.current = 0 if running else None
            self.total, self.message, self.updated_at = 100, None, None
            return
        self.current, self.total = record.current, record.total
        self.message, self.updated_at = record.message, record.updated_at

    async def subscribe(
        self, *, ready: asyncio.Event | None = None
    ) -> AsyncGenerator[ProgressEvent, None]:
        """Every progress update from now on (`ready` is set once they are being
        received). Unlike `Execution.subscribe`, no current value comes first."""
        nc = self.docket.connection.nc
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        async def deliver(message: Msg) -> None:
            inbox.put_nowait(message.data)

        subscription = await nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            progress_subject(self.docket.names, self.key), cb=deliver
        )
        try:
            await nc.flush()
            if ready is not None:
                ready.set()
            while True:
                data = await inbox.get()
                record = decode_progress(data)
                if record is None:
                    continue  # the run ended: its progress was removed
                self.apply(record)
                yield self.event()
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:  # (connection already closed)
                pass

    def event(self) -> ProgressEvent:
        """The current value as docket's progress event."""
        return {
            "type": "progress",
            "key": self.key,
            "current": self.current,
            "total": self.total,
            "message": self.message,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    async def _publish(self) -> None:
        if self.run is not None:
            await report_running(self.run)
        self.updated_at = datetime.now(UTC)
        record = ProgressRecord(
            current=self.current, total=self.total, message=self.message, updated_at=self.updated_at
        )
        await self.docket.connection.nc.publish(
            progress_subject(self.docket.names, self.key), _encode(record)
        )
