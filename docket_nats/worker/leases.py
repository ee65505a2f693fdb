"""The lease keeper: a live worker's tasks are never redelivered.

JetStream redelivers a message that is not acked within the consumer's ack wait
(the worker's `redelivery_timeout`). While a task runs, however long, this actor
tells the server it is still in progress, a few times per ack wait. A worker that
dies stops renewing, and its tasks go to another worker after the timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from nats.aio.msg import Msg

from .actors import Actor

logger = logging.getLogger("docket_nats.worker")


class LeaseKeeper(Actor):
    name = "lease-keeper"

    def __init__(self, held: Callable[[], Iterable[Msg]], ack_wait: float) -> None:
        self.held = held
        # Three renewals per ack wait tolerate one lost or late renewal.
        self.interval = max(ack_wait / 3, 0.05)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for message in list(self.held()):
                try:
                    await message.in_progress()
                except Exception as error:  # disconnected: the next round retries
                    logger.debug("in-progress signal failed: %s", error)
