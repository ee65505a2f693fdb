"""The puller: keeps pull requests open for exactly the worker's free slots.

Rather than fetch-and-wait loops, the puller keeps a standing JetStream pull
request sized to the free slots, so a task published while the worker is idle is
pushed to it at once (no polling interval), and a busy worker asks for more as
soon as enough slots free up. Server status messages say how many requested
messages will not come (request expired, consumer changed); idle heartbeats
prove the request is alive; after a reconnection or a silence the count is reset.

Priorities: each level has its own consumer, and the puller keeps one standing
request per level, each sized to that level's free slots (worker/_slots.py). A
higher level's task is thus pushed at once even while a lower level's backlog
fills the worker; the cost is that when several levels have work at the same
moment the worker holds up to one capacity per level (the surplus waits in the
mailbox, highest priority first, its leases renewed). Requests are answered at
`<inbox>.<level>`: a status there names its level, a task by its own subject.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._subjects import LEVELS, PENDING_MESSAGES, STATUS, Names, consumer_next_api
from ._actors import Actor
from ._slots import Slots

logger = logging.getLogger("docket_nats.worker")

PULL_EXPIRES = 30.0
IDLE_HEARTBEAT = 5.0


class Puller(Actor):
    name = "puller"

    def __init__(
        self,
        nc: Client,
        names: Names,
        slots: Slots,
        deliver: Callable[[Msg], None],
        refuse: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self.nc = nc
        self.names = names
        self.subjects = {
            level: consumer_next_api(names.stream, names.level_consumer(level)) for level in LEVELS
        }
        self.slots = slots
        self.deliver = deliver
        self.refuse = refuse
        # Ask again once this many slots are free and unrequested: one request per
        # quarter of the concurrency keeps request traffic low without starving.
        self.threshold = max(1, slots.capacity // 4)
        # Messages asked for and not yet come, per priority level.
        self.requested = dict.fromkeys(LEVELS, 0)
        self._stopped = False  # the worker is stopping
        self._paused = False  # the worker is fenced
        # Per level: another level's heartbeats must not hide a dead request.
        self.last_heard = dict.fromkeys(LEVELS, time.monotonic())
        self._inbox = nc.new_inbox()
        self._new_inbox = False
        self._subscription: Subscription | None = None

    @property
    def pulling(self) -> bool:
        return not (self._stopped or self._paused)

    def stop_pulling(self) -> None:
        """Graceful stop: ask for nothing more; hand back whatever still arrives."""
        self._stopped = True
        self.slots.changed.set()

    def pause(self) -> None:
        """Fenced (no contact): ask for nothing; hand back whatever still arrives.

        The requests already made are abandoned with their inbox: after a
        reconnection nats-py subscribes the inbox again, and the server would go
        on delivering to them, each message handed back and delivered again at
        once (seen: a key delivered 19 times in a moment)."""
        self._paused = True
        self._new_inbox = True
        self.slots.changed.set()

    def resume(self) -> None:
        """Contact is back: ask afresh (earlier requests may be gone)."""
        self._paused = False
        self.connection_reset()

    def connection_reset(self) -> None:
        """Pull requests do not survive a reconnection: ask afresh."""
        self._forget_requests()
        self.slots.changed.set()

    async def connection_lost(self) -> None:
        """The connection broke (nats-py is about to reconnect): drop the inbox
        now, so that nats-py does not subscribe it again on the new connection.
        The server keeps the requests made on the old one, and with the inbox
        subscribed again they would deliver on top of the new requests
        (measured: 4 messages held by a worker with 2 free slots;
        tests/worker/test_reconnect_pulls.py). Unsubscribed, they find no
        interest and the server drops them."""
        self._new_inbox = True
        if self._subscription is not None:
            await _quietly_unsubscribe(self._subscription)
        self.slots.changed.set()

    def _forget_requests(self) -> None:
        for level in LEVELS:
            self.requested[level] = 0

    async def run(self) -> None:
        subscription = self._subscription = await self._subscribe()
        self._forget_requests()
        try:
            while True:
                if self._new_inbox:
                    self._new_inbox = False
                    await _quietly_unsubscribe(subscription)
                    self._inbox = self.nc.new_inbox()
                    subscription = self._subscription = await self._subscribe()
                    self._forget_requests()
                await self._pull_if_needed()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with the event being set.
                try:
                    async with asyncio.timeout(IDLE_HEARTBEAT):
                        await self.slots.changed.wait()
                except TimeoutError:
                    pass
                self.slots.changed.clear()
                # Every round, not only when idle: a busy worker whose request
                # died with the server must notice it too.
                self._check_silence()
        finally:
            await _quietly_unsubscribe(subscription)

    async def _subscribe(self) -> Subscription:
        return await self.nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            f"{self._inbox}.*", cb=self._on_message
        )

    async def _pull_if_needed(self) -> None:
        if not self.pulling or self.nc.is_reconnecting or self.nc.is_closed:
            return
        for level in LEVELS:  # highest first: its request reaches the server first
            requested = self.requested[level]
            wanted = self.slots.free(level) - requested
            if wanted <= 0 or (wanted < self.threshold and requested > 0):
                continue
            request = {
                "batch": wanted,
                "expires": int(PULL_EXPIRES * 1e9),
                "idle_heartbeat": int(IDLE_HEARTBEAT * 1e9),
            }
            if requested == 0:
                self.last_heard[level] = time.monotonic()
            self.requested[level] = requested + wanted
            await self.nc.publish(
                self.subjects[level], json.dumps(request).encode(), reply=f"{self._inbox}.{level}"
            )

    def _check_silence(self) -> None:
        # Two missed heartbeats: the request died with a connection or a server
        # (or with its consumer's leader, the other levels' living on).
        now = time.monotonic()
        for level in LEVELS:
            if self.requested[level] and now - self.last_heard[level] > 2 * IDLE_HEARTBEAT:
                logger.debug("pull request went silent; asking again")
                self.requested[level] = 0

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(STATUS) if headers else None
        if status is None:  # a task: it carries its own subject, naming its level
            level = self.names.level_of(msg.subject)
            self.last_heard[level] = time.monotonic()
            self.requested[level] = max(0, self.requested[level] - 1)
            if self.pulling:
                self.slots.take(level)
                self.deliver(msg)
            else:
                await self.refuse(msg)
            return
        answered = _level_of_reply(msg.subject)  # a status comes to `<inbox>.<level>`
        if answered is None:  # not an answer to one of our requests
            return
        level = answered
        self.last_heard[level] = time.monotonic()
        if status == "100":  # idle heartbeat (or flow control): the request is alive
            return
        assert headers is not None
        pending = headers.get(PENDING_MESSAGES)
        if pending is not None:
            # The server says how many of our requested messages will not come.
            self.requested[level] = max(0, self.requested[level] - int(pending))
        elif status in ("404", "408", "409"):
            self.requested[level] = 0
        if status == "409":
            logger.debug("pull request ended by the server: %s", headers.get("Description"))
        self.slots.changed.set()


_REPLY_LEVELS = {str(level): level for level in LEVELS}


def _level_of_reply(subject: str) -> int | None:
    """The level a reply to `<inbox>.<level>` answers (None: no level of ours)."""
    return _REPLY_LEVELS.get(subject.rpartition(".")[2])


async def _quietly_unsubscribe(subscription: Subscription) -> None:
    try:
        await subscription.unsubscribe()
    except Exception as error:  # the connection may already be closed
        logger.debug("unsubscribe failed: %s", error)
