"""The lifeline: renews a worker's leases from a thread while its event loop is blocked.

Leases are renewed (`in_progress`) by the lease keeper, a coroutine. An async
task that blocks the loop (CPU work, `time.sleep`, a blocking call, no await)
for longer than the redelivery timeout would stop it, the server would redeliver
every task held here, and another worker would run them while this one still
does (measured before this existed: redelivered 1.5 s into a 4 s block with a
1.5 s timeout; tests/worker/test_blocked_loop.py).

So a thread with its own event loop and its own NATS connection watches the
worker's loop: the loop watch actor (`_loop_watch.py`) beats every
`LoopWatch.period`. When no beat came for `STALL` of the ack wait, the thread
copies the list of messages the worker holds and renews them itself (an
in-progress ack is a plain publish to the message's ack subject, which any
connection of the account may send), then round-trips (flush: the server has
read the renewals), and records the round in the worker's `Contact`, so the
fence does not cancel runs whose leases are safe when the loop wakes.

A missing beat suggests the loop is blocked but does not prove it (a loop busy
with other callbacks beats late too), so the copy may race the loop. Each
outcome is safe: a copy that meets a list being changed raises RuntimeError and
the round is skipped (the loop runs, its lease keeper renews); a message the
loop settled after the copy gets a harmless in-progress ack; one that arrived
after it, or that a racing copy missed, is not in the round's record, so its
floor stays where the lease keeper left it and the fence errs towards acting.

The connection is opened when a stall begins and closed at the first check that
finds the loop beating again (nothing runs this thread's loop between stalls, so
an idle connection would answer no PING and the server would drop it as stale),
or with the thread. Renewals that cannot be confirmed (the server unreachable
from the thread too) are not recorded: the fence then acts as for a partition.

A task that blocks for ever thus holds its lease for ever, as a sync task that
never returns does; `Timeout(...)` cannot interrupt a blocked loop either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from ._contact import Contact

logger = logging.getLogger("docket_nats.worker")

# The loop counts as stalled after this share of the ack wait without a beat;
# the thread then renews every STALL of the ack wait while the stall lasts: six
# rounds per ack wait, twice the lease keeper's rate (A/3), so that a round that
# goes unanswered is followed by another well before the fence's deadline.
STALL = 1 / 6


class Lifeline:
    def __init__(
        self,
        worker_name: str,
        contact: Contact,
        ack_wait: Callable[[], float],
        held: Callable[[], Iterable[Msg]],
        connect: Callable[[], dict[str, Any]],
    ) -> None:
        self.worker_name = worker_name
        self.contact = contact
        self.held = held
        self.ack_wait = ack_wait
        self.connect = connect
        # When the worker's loop last ran the loop watch (monotonic).
        self._beat = time.monotonic()
        self.rounds = 0  # answered rounds of renewals (read by the loop watch)
        self.connected = False  # whether the thread holds its connection open
        self._stop = threading.Event()

    def beat(self) -> None:
        """The worker's loop runs (called from it, every period)."""
        self._beat = time.monotonic()

    def start(self) -> None:
        self._stop = threading.Event()
        self._beat = time.monotonic()
        threading.Thread(
            target=self._main,
            args=(self._stop,),
            name=f"docket-lifeline-{self.worker_name}",
            daemon=True,
        ).start()

    def stop(self) -> None:
        """The thread ends at once (or after the renewal round it is in) and
        closes its connection; not waited for."""
        self._stop.set()

    def _main(self, stop: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        nc: Client | None = None
        try:
            while not stop.wait(min(1.0, self.ack_wait() * STALL / 4)):
                ack_wait = self.ack_wait()
                started = time.monotonic()
                if started - self._beat < ack_wait * STALL:
                    if nc is not None:
                        # The loop beats again. Nothing runs this thread's loop
                        # between stalls, so the connection would answer no PING
                        # and the server would drop it as stale before the next.
                        self._close(loop, nc)
                        nc = None
                    continue
                try:
                    held = tuple(message.reply for message in self.held())
                except RuntimeError:  # the loop woke and changed them: it renews again
                    continue
                if not held:
                    continue
                try:
                    if nc is None or nc.is_closed:
                        nc = loop.run_until_complete(self._connect())
                        self.connected = True
                    loop.run_until_complete(self._renew(nc, held, ack_wait))
                except Exception as error:  # the fence acts: nothing was recorded
                    logger.error(
                        "worker %s: event loop blocked and the lifeline could not renew "
                        "its leases: %r",
                        self.worker_name,
                        error,
                    )
                    continue
                self.contact.lifeline = (started, frozenset(held))
                self.rounds += 1
                # The next round one STALL after this one began.
                stop.wait(max(0.0, started + ack_wait * STALL - time.monotonic()))
        finally:
            if nc is not None:
                self._close(loop, nc)
            loop.close()

    def _close(self, loop: asyncio.AbstractEventLoop, nc: Client) -> None:
        self.connected = False
        try:
            loop.run_until_complete(nc.close())
        except Exception as error:  # going away regardless
            logger.debug("closing the lifeline connection: %r", error)

    async def _connect(self) -> Client:
        # Ours win over the user's connect options of the same names (passed
        # both ways they would be a TypeError): the thread must fail fast within
        # a round, not reconnect for ever.
        options: dict[str, Any] = self.connect() | {
            "name": f"docket-nats-lifeline:{self.worker_name}",
            "allow_reconnect": False,
            "connect_timeout": 2,
        }
        return await nats.connect(**options)  # pyright: ignore[reportUnknownMemberType]

    @staticmethod
    async def _renew(nc: Client, held: tuple[str, ...], ack_wait: float) -> None:
        for reply in held:
            await nc.publish(reply, b"+WPI")
        await nc.flush(timeout=max(1, round(ack_wait * STALL)))
