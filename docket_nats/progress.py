"""Progress a running task reports: current / total and a message.

Only the task's own run writes its progress, so the counter lives in memory and
each change is one publish (no ack awaited) of the whole value to the key's
`progress.<key>` entry of the executions bucket: the bucket keeps the latest
value for readers, and subscribers of the subject see every update live.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
from nats.js.errors import NotFoundError

from .state import bucket_stream, progress_subject, report_running

if TYPE_CHECKING:
    from .docket import Docket
    from .execution import Execution


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


async def read_progress(docket: Docket, key: str) -> ProgressRecord | None:
    try:
        message = await docket.connection.js.get_last_msg(
            bucket_stream(docket.names), progress_subject(docket.names, key)
        )
    except NotFoundError:
        return None
    return decode_progress(message.data or b"")


class ExecutionProgress:
    """The progress of one execution (docket's `ExecutionProgress`)."""

    def __init__(self, docket: Docket, key: str, execution: Execution | None = None) -> None:
        self.docket = docket
        self.key = key
        # The run reporting this progress (worker side), if any.
        self.execution = execution
        self.current: int | None = None
        self.total: int = 100
        self.message: str | None = None
        self.updated_at: datetime | None = None

    async def set_total(self, total: int) -> None:
        if total < 1:
            raise ValueError("total must be at least 1")
        self.total = total
        if self.current is None:
            self.current = 0
        await self._publish()

    async def increment(self, amount: int = 1) -> None:
        if amount < 1:
            raise ValueError("amount must be at least 1")
        self.current = (self.current or 0) + amount
        await self._publish()

    async def set_message(self, message: str | None) -> None:
        self.message = message
        if self.current is None:
            self.current = 0
        await self._publish()

    async def sync(self) -> None:
        self.apply(await read_progress(self.docket, self.key))

    def apply(self, record: ProgressRecord | None) -> None:
        if record is None:
            self.current, self.total, self.message, self.updated_at = None, 100, None, None
            return
        self.current, self.total = record.current, record.total
        self.message, self.updated_at = record.message, record.updated_at

    async def _publish(self) -> None:
        if self.execution is not None:
            await report_running(self.execution)
        self.updated_at = datetime.now(UTC)
        record = ProgressRecord(
            current=self.current, total=self.total, message=self.message, updated_at=self.updated_at
        )
        await self.docket.connection.nc.publish(
            progress_subject(self.docket.names, self.key), _encode(record)
        )
