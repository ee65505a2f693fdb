"""What a worker can prove about its leases: the round trips the server answered.

The lease keeper renews every held message (`in_progress`) once per round and
then sends a request the server itself answers; when the answer comes back, the
round is *confirmed*: the server received every renewal of the round before it
answered (one TCP connection keeps order), so none of those messages can be
redelivered before the round's start + the ack wait. A message that arrived after
a round began is not covered by it: it was sent by the server after its answer to
the round before (same ordering), so the previous confirmed round bounds its
lease instead.

From these bounds, `fence_deadline` says when the oldest lease this worker holds
may lapse, less a margin: past it, the worker must stop its runs itself (fence),
because the server is free to hand them to another worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from nats.aio.msg import Msg

# The fence comes this share of the ack wait before the earliest possible
# redelivery: time for the cancelled runs to end, and for one-way latency.
FENCE_MARGIN = 1 / 6


class Contact:
    def __init__(self) -> None:
        now = time.monotonic()
        # Start of the last confirmed round, and of the one before it.
        self.confirmed = now
        self.previous = now
        # Per held message (by its unique ack subject): the start of the last
        # confirmed round that renewed it.
        self._floors: dict[str, float] = {}
        # An answer came after the fence deadline: the leases' chain is broken.
        self.lapsed = False
        # Renewals the lifeline thread made while the event loop was blocked
        # (worker/_lifeline.py): the start of its last answered round and the
        # messages (ack subjects) it renewed. Replaced whole, from that thread.
        self.lifeline: tuple[float, frozenset[str]] = (float("-inf"), frozenset())
        self.changed = asyncio.Event()

    def confirm(
        self, started: float, renewed: Iterable[Msg], held: list[Msg], ack_wait: float
    ) -> None:
        """A round that began at `started` (renewing `renewed`) was answered.

        Answered too late (past the fence deadline), it proves nothing about the
        leases: one may have lapsed in between. Then `lapsed` is set (fence now).
        """
        if held and time.monotonic() >= self.fence_deadline(held, ack_wait):
            self.lapsed = True
        renewed_ids = {message.reply for message in renewed}
        floors = {reply: started for reply in renewed_ids}
        for message in held:  # arrived since the round began: keep what it had
            if message.reply not in floors and message.reply in self._floors:
                floors[message.reply] = self._floors[message.reply]
        self._floors = floors
        self.previous, self.confirmed = self.confirmed, started
        self.changed.set()

    def restart(self) -> None:
        """After a fence (nothing held): the chain of rounds starts afresh from the
        round that ended it; what arrives now was sent after its answer."""
        self.previous = self.confirmed
        self._floors = {}

    def lease_floor(self, held: Iterable[Msg]) -> float:
        """The earliest instant any held message's lease may have been renewed last."""
        renewed_at, renewed = self.lifeline
        floors = [
            max(
                self._floors.get(message.reply, self.previous),
                renewed_at if message.reply in renewed else float("-inf"),
            )
            for message in held
        ]
        return min(floors, default=self.confirmed)

    def fence_deadline(self, held: Iterable[Msg], ack_wait: float) -> float:
        """When the worker must have fenced itself (monotonic time)."""
        return self.lease_floor(held) + ack_wait * (1 - FENCE_MARGIN)
