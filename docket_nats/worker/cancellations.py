"""The cancel listener: `docket.cancel(key)` stops a task that is already running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from ..subjects import Names
from .actors import Actor


class CancelListener(Actor):
    name = "cancel-listener"

    def __init__(self, nc: Client, names: Names, cancel: Callable[[str], bool]) -> None:
        self.nc = nc
        self.names = names
        self.cancel = cancel

    async def run(self) -> None:
        async def on_cancel(message: Msg) -> None:
            self.cancel(Names.key_of(message.subject))

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
