"""The early hold: holds tasks that arrive before they are due, then releases them.

NATS message schedules fire in server passes at least 250 ms apart, so a task due
shortly after another one's firing would run up to 250 ms late. The docket
therefore schedules each future task to fire `SCHEDULE_LEAD` early (and publishes
a task due within the lead straight to the run subject), stamping its due time in
the `Docket-When` header; this actor holds such messages until that instant, then
hands them to the executor. A held message occupies no run slot and no pull slot
(so the puller keeps fetching), and the lease keeper renews it like a running one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable

from nats.aio.msg import Msg

from .._subjects import DOCKET_WHEN, Names
from ._actors import Actor
from ._slots import Slots

# Early by less than this, a task is not worth holding.
HOLD_THRESHOLD = 0.001


def due_time(message: Msg) -> float | None:
    """The wall-clock due time a message carries, if it was scheduled."""
    headers = message.headers
    if not headers:
        return None
    stamp = headers.get(DOCKET_WHEN)
    if stamp is None:
        return None
    try:
        due = float(stamp)
    except ValueError:
        return None
    # "nan" or "inf" would be held forever (renewed all the while): run it now.
    return due if math.isfinite(due) else None


class EarlyHold(Actor):
    name = "early hold"

    def __init__(self, names: Names, slots: Slots, release: Callable[[Msg], None]) -> None:
        self.names = names
        self.slots = slots
        self.release = release
        self._held: list[tuple[float, int, Msg]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def deliver(self, message: Msg) -> None:
        """From the puller (which counted it against the slots): hold it or pass it on."""
        due = due_time(message)
        if due is None or due - time.time() < HOLD_THRESHOLD:
            self.release(message)
            return
        # Held, not running: let the puller fetch more.
        self.slots.give_back(self.names.level_of(message.subject))
        heapq.heappush(self._held, (due, next(self._order), message))
        self._changed.set()

    def held(self) -> list[Msg]:
        return [message for _, _, message in self._held]

    def void(self, key: str, superseded_before: int | None) -> list[Msg]:
        """Take out held copies of a cancelled key (or older than its replacement)."""
        void = [
            entry
            for entry in self._held
            if Names.key_of(entry[2].subject) == key
            and (superseded_before is None or entry[2].metadata.sequence.stream < superseded_before)
        ]
        if void:
            self._held = [entry for entry in self._held if entry not in void]
            heapq.heapify(self._held)
            self._changed.set()
        return [message for _, _, message in void]

    def take_all(self) -> list[Msg]:
        """Everything held (on stop, to hand back; fenced, to drop)."""
        held, self._held = self.held(), []
        self._changed.set()
        return held

    async def run(self) -> None:
        while True:
            now = time.time()
            while self._held and self._held[0][0] - now < HOLD_THRESHOLD:
                _, _, message = heapq.heappop(self._held)
                self.slots.take(self.names.level_of(message.subject))
                self.release(message)
            wait = self._held[0][0] - now if self._held else None
            self._changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass
