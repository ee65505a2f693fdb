"""Execution slots: how many task messages a worker holds, against its concurrency.

Counted per priority level, each level against the whole capacity: a backlog of
one level filling the worker never stops it from taking another level's tasks
(the mailbox then starts the highest first). A worker therefore holds at most
one capacity per level, and only while every level has work.
"""

from __future__ import annotations

import asyncio

from .._subjects import LEVELS


class Slots:
    """Counts the messages a worker holds; wakes whoever waits for a change."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("concurrency must be at least 1")
        self.capacity = capacity
        self._held = dict.fromkeys(LEVELS, 0)
        self.changed = asyncio.Event()

    @property
    def held(self) -> int:
        """Messages held, every level together."""
        return sum(self._held.values())

    def free(self, level: int) -> int:
        """How many more messages of `level` this worker may take."""
        return self.capacity - self._held[level]

    def take(self, level: int) -> None:
        self._held[level] += 1

    def give_back(self, level: int) -> None:
        self._held[level] -= 1
        self.changed.set()
