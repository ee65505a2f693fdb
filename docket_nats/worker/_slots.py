"""Execution slots: how many task messages a worker holds, against its concurrency."""

from __future__ import annotations

import asyncio


class Slots:
    """Counts the messages a worker holds; wakes whoever waits for a change."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("concurrency must be at least 1")
        self.capacity = capacity
        self.held = 0
        self.changed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.capacity - self.held

    def take(self) -> None:
        self.held += 1

    def give_back(self) -> None:
        self.held -= 1
        self.changed.set()
