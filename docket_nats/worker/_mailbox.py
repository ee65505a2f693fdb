"""The executor's mailbox: delivered messages waiting for a run slot, by priority.

A free run slot takes the highest priority level waiting, so a HIGH task that
arrives after a thousand prefetched LOW ones still starts first. Low levels are
never starved: whenever tasks of more than one level wait, one start in
`STARVATION_SHARE` goes to the oldest waiting task of any level instead.
Within a level, first in, first out.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator

from nats.aio.msg import Msg

from .._subjects import LEVELS, Names

# Of the starts made while more than one level waits, one in this many goes to
# the oldest waiting task (the documented share of the lower levels).
STARVATION_SHARE = 10


class Mailbox:
    """Messages waiting for a run slot, one FIFO per priority level."""

    def __init__(self, names: Names) -> None:
        self._names = names
        # Highest level first; each entry carries its arrival number, so the
        # oldest waiting task across levels is known.
        self._levels: list[tuple[int, deque[tuple[int, Msg]]]] = [
            (level, deque()) for level in LEVELS
        ]
        self._queue_of = dict(self._levels)
        self._arrivals = itertools.count()
        self._contested = 0  # starts made while more than one level waited
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Msg]:
        for _, queue in self._levels:
            for _, message in queue:
                yield message

    def append(self, message: Msg) -> None:
        queue = self._queue_of[self._names.level_of(message.subject)]
        queue.append((next(self._arrivals), message))
        self._size += 1

    def pop(self) -> Msg:
        """The next message to start (IndexError when empty)."""
        chosen: deque[tuple[int, Msg]] | None = None
        contested = False
        for _, queue in self._levels:
            if queue:
                if chosen is not None:
                    contested = True
                    break
                chosen = queue  # the highest level waiting
        if chosen is None:
            raise IndexError("pop from an empty mailbox")
        if contested:
            self._contested += 1
            if self._contested % STARVATION_SHARE == 0:
                waiting = [queue for _, queue in self._levels if queue]
                chosen = min(waiting, key=lambda queue: queue[0][0])
        self._size -= 1
        return chosen.popleft()[1]

    def take_where(self, predicate: Callable[[Msg], bool]) -> list[Msg]:
        """Take out every message `predicate` holds for (cancelled, superseded)."""
        taken: list[Msg] = []
        for _, queue in self._levels:
            kept = [entry for entry in queue if not predicate(entry[1])]
            if len(kept) != len(queue):
                taken.extend(entry[1] for entry in queue if predicate(entry[1]))
                queue.clear()
                queue.extend(kept)
        self._size -= len(taken)
        return taken
