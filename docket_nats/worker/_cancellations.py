"""The cancel listener: `docket.cancel(key)` stops a task that is already running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from .._subjects import Names
from ._actors import Actor


class CancelListener(Actor):
    name = "cancel-listener"

    def __init__(
        self, nc: Client, names: Names, cancel: Callable[[str, int | None], Awaitable[bool]]
    ) -> None:
        self.nc = nc
        self.names = names
        self.cancel = cancel

    async def run(self) -> None:
        async def on_cancel(message: Msg) -> None:
            # An empty body is docket.cancel; a stream sequence is docket.replace
            # (copies older than the replacement are void).
            body = message.data.strip()
            if body and not body.isdigit():
                return  # not a notice this version understands
            await self.cancel(Names.key_of(message.subject), int(body) if body else None)

        subscription = await self.nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            self.names.cancel_filter, cb=on_cancel
        )
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:  # the connection may be closed already
                pass
