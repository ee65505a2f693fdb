"""The fence: a worker cut off from the server stops its runs before anyone else starts them.

JetStream redelivers a message whose lease (renewed by the lease keeper) lapses.
A worker on the wrong side of a network partition cannot renew, and nothing
tells it the renewals are lost, so without a fence the server would hand its
running tasks to another worker while they still run here: two copies of a key
at once. This actor watches `Contact.fence_deadline` (the earliest moment a held
lease may lapse, less `FENCE_MARGIN` of the ack wait) and, when it passes without
a confirmed round trip, fences the worker: running tasks are cancelled, held
messages dropped (neither acked nor handed back: the server redelivers them once
their lease lapses), and no work is taken until a round trip is answered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from ._actors import Actor
from ._contact import FENCE_MARGIN, Contact

logger = logging.getLogger("docket_nats.worker")


class Fence(Actor):
    name = "fence"

    def __init__(
        self,
        contact: Contact,
        held: Callable[[], list[Msg]],
        ack_wait: Callable[[], float],
        fence: Callable[[str, float], Awaitable[None]],
        lift: Callable[[], None],
    ) -> None:
        self.contact = contact
        self.held = held
        self.ack_wait = ack_wait
        self.fence = fence
        self.lift = lift
        self.fenced = False

    async def run(self) -> None:
        contact = self.contact
        while True:
            contact.changed.clear()
            ack_wait = self.ack_wait()
            deadline = contact.fence_deadline(self.held(), ack_wait)
            now = time.monotonic()
            if contact.lapsed or now >= deadline:
                await self._fence_until_contact(now, ack_wait)
                continue
            try:
                async with asyncio.timeout(deadline - now):
                    await contact.changed.wait()
            except TimeoutError:
                pass

    async def _fence_until_contact(self, now: float, ack_wait: float) -> None:
        contact = self.contact
        # Counted from the last confirmed renewal of the oldest lease held, which the
        # deadline is (not from the last answered round: a message that arrived after
        # that round began is covered only by the round before, e.g. the last one
        # answered before a reconnection).
        silent = now - contact.lease_floor(self.held())
        reason = (
            f"no round trip to the server answered for {silent:.2f}s since the oldest "
            f"lease held here was renewed (redelivery timeout {ack_wait:.3g}s): it may lapse"
            if not contact.lapsed
            else "a round trip to the server was answered too late: a lease may have lapsed"
        )
        contact.lapsed = False
        self.fenced = True
        try:
            # The cancelled runs get half the margin to end; the other half is
            # for the network and clocks.
            await self.fence(reason, ack_wait * FENCE_MARGIN / 2)
            while contact.confirmed <= now:  # a round begun after the fence, answered
                contact.changed.clear()
                await contact.changed.wait()
            contact.restart()
        finally:
            self.fenced = False
        logger.warning("worker back in contact with the server: taking work again")
        self.lift()
