"""The lease keeper: a live worker's tasks are never redelivered.

JetStream redelivers a message that is not acked within the consumer's ack wait
(the workers' `redelivery_timeout`). While a task runs, however long, this actor
tells the server it is still in progress, a few times per ack wait. A worker that
dies stops renewing, and its tasks go to another worker after the timeout.

All workers of a docket share one consumer, and the last worker to start sets its
ack wait, so a worker started with a shorter `redelivery_timeout` shortens it for
everyone. Renewing by this worker's own timeout would then let the server hand
its running tasks to others. So the keeper renews by the consumer's ack wait:
a starting worker announces the value before it sets it (`announce_ack_wait`),
keepers adopt it and renew at once, and each keeper also re-reads the consumer
every few seconds in case it missed an announcement (while disconnected).

Each round of renewals ends with a round trip (a request the server answers); an
answered one is
reported to the worker's `Contact`, which says until when the leases are safe
(see `_contact.py` and the fence, `_fencing.py`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from ._actors import Actor
from ._contact import Contact

logger = logging.getLogger("docket_nats.worker")

# Renewals per ack wait: three tolerate one lost or late renewal.
RENEWALS_PER_ACK_WAIT = 3
# How often the consumer's ack wait is read again (the backstop).
ACK_WAIT_REFRESH = 5.0
MINIMUM_INTERVAL = 0.05
# asyncio may wake a sleeper up to its clock resolution early.
CLOCK_SLACK = 0.005


async def announce_ack_wait(nc: Client, subject: str, ack_wait: float) -> None:
    """Tell running workers the ack wait about to be set, before setting it."""
    await nc.publish(subject, repr(ack_wait).encode())
    await nc.flush()


def parse_ack_wait(data: bytes) -> float | None:
    """An announced ack wait, or None for anything but a positive finite number
    (anyone can publish on the subject: "inf" would stop every renewal)."""
    try:
        value = float(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if math.isfinite(value) and value > 0 else None


class LeaseKeeper(Actor):
    name = "lease-keeper"

    def __init__(
        self,
        held: Callable[[], Iterable[Msg]],
        ack_wait: float,
        current_ack_wait: Callable[[], Awaitable[float]] | None = None,
        notices: tuple[Client, str] | None = None,
        contact: tuple[Client, Contact, str] | None = None,
    ) -> None:
        self.held = held
        self.ack_wait = ack_wait
        self.current_ack_wait = current_ack_wait
        self.notices = notices
        self.contact = contact
        self._changed = asyncio.Event()

    @property
    def interval(self) -> float:
        return max(self.ack_wait / RENEWALS_PER_ACK_WAIT, MINIMUM_INTERVAL)

    async def run(self) -> None:
        subscription = None
        if self.notices is not None:
            nc, subject = self.notices
            subscription = await nc.subscribe(subject, cb=self._on_notice)  # pyright: ignore[reportUnknownMemberType]
        try:
            await self._keep()
        finally:
            if subscription is not None:
                try:
                    await subscription.unsubscribe()
                except Exception:  # the connection may be closed already
                    pass

    async def _keep(self) -> None:
        last_renewal = last_refresh = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_refresh >= ACK_WAIT_REFRESH:
                last_refresh = now
                self._adopt(await self._read_ack_wait(), "read from the consumer")
            due = last_renewal + self.interval
            if now >= due - CLOCK_SLACK:
                await self._renew()
                last_renewal = now
                due = now + self.interval
            # Sleep until the next renewal or refresh; a notice wakes it sooner.
            self._changed.clear()
            try:
                async with asyncio.timeout(max(min(due, last_refresh + ACK_WAIT_REFRESH) - now, 0)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _on_notice(self, message: Msg) -> None:
        announced = parse_ack_wait(message.data)
        if announced is None:
            logger.warning("ignoring an ack wait notice that is not one: %r", message.data[:64])
            return
        self._adopt(announced, "announced by a starting worker")

    def _adopt(self, ack_wait: float | None, source: str) -> None:
        if ack_wait is None or ack_wait <= 0 or ack_wait == self.ack_wait:
            return
        logger.info(
            "the docket's redelivery timeout changed from %.3gs to %.3gs (%s); "
            "renewing leases accordingly",
            self.ack_wait,
            ack_wait,
            source,
        )
        self.ack_wait = ack_wait
        self._changed.set()  # renew now if the new interval is already up

    async def _read_ack_wait(self) -> float | None:
        if self.current_ack_wait is None:
            return None
        try:
            async with asyncio.timeout(ACK_WAIT_REFRESH):
                return await self.current_ack_wait()
        except Exception as error:  # disconnected: keep the last known value
            logger.debug("could not read the consumer's ack wait: %s", error)
            return None

    async def _renew(self) -> None:
        started = time.monotonic()
        renewed = list(self.held())
        reconnects = self._reconnects()
        for message in renewed:
            try:
                await message.in_progress()
            except Exception as error:  # disconnected: the next round retries
                logger.debug("in-progress signal failed: %s", error)
        await self._round_trip(started, renewed, reconnects)

    def _reconnects(self) -> int | None:
        if self.contact is None:
            return None
        nc = self.contact[0]
        return nc.stats["reconnects"] if nc.is_connected else None

    async def _round_trip(self, started: float, renewed: list[Msg], reconnects: int | None) -> None:
        """Confirm the round: the server answered a request sent after its renewals,
        on the same connection (a reconnection in between may have lost them).

        A request to a subject nobody listens on, not a flush: nats-py leaves a
        flush that timed out in its PONG queue, and the late PONG then breaks its
        read loop (InvalidStateError, seen through the test proxy).
        """
        if self.contact is None or reconnects is None:
            return
        nc, contact, probe = self.contact
        try:
            await nc.request(probe, b"", timeout=max(self.interval, MINIMUM_INTERVAL))
        except NoRespondersError:
            pass  # the server's own answer: the round trip we wanted
        except Exception as error:  # no answer in time: the round proves nothing
            logger.debug("round trip after renewing leases failed: %r", error)
            return
        if nc.is_connected and nc.stats["reconnects"] == reconnects:
            contact.confirm(started, renewed, list(self.held()), self.ack_wait)
