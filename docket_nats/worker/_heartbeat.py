"""The heartbeat actor: tells the docket this worker is alive, every interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from .._subjects import Names
from .._worker_registry import Heartbeat, beat
from ._actors import Actor

logger = logging.getLogger("docket_nats.worker")


class HeartbeatSender(Actor):
    name = "heartbeat"

    def __init__(
        self,
        js: JetStreamContext,
        names: Names,
        snapshot: Callable[[], Heartbeat],
        interval: float,
        ttl: float,
    ) -> None:
        self.js = js
        self.names = names
        self.snapshot = snapshot
        self.interval = interval
        self.ttl = ttl

    async def run(self) -> None:
        while True:
            try:
                await beat(self.js, self.names, self.snapshot(), self.ttl)
            except Exception as error:  # disconnected: the next beat retries
                logger.debug("heartbeat failed: %s", error)
            await asyncio.sleep(self.interval)
