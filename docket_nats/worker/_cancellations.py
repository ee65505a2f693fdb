"""The cancel listener: `docket.cancel(key)` stops a task that is already running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg

from .._subjects import Names
from ._actors import Actor

logger = logging.getLogger("docket_nats.worker")


def parse_cancel_notice(data: bytes) -> int | Literal[False] | None:
    """None for docket.cancel (an empty body); a stream sequence for docket.replace
    (copies older than the replacement are void); False for anything else."""
    body = data.strip()
    if not body:
        return None
    if body.isascii() and body.isdigit():  # bytes.isdigit is ASCII-only already
        return int(body)
    return False


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
            notice = parse_cancel_notice(message.data)
            if notice is False:
                logger.warning("ignoring a cancel notice this version does not understand")
                return
            await self.cancel(Names.key_of(message.subject), notice)

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
