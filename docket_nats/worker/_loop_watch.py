"""The loop watch: the event loop's side of the lifeline, and its reporter.

Every `period` it tells the lifeline thread (`_lifeline.py`) that the loop
runs; if the loop was blocked (the watch woke late by at
least half the fence margin), it says so as soon as the loop runs again: a
WARNING naming the tasks that were running (one of them blocked it) and how
many rounds of renewals the lifeline made meanwhile; an ERROR and the counter
`docket_tasks_blocked_loop` when the block outlasted the leases and the
lifeline could not renew them (a copy may have run elsewhere at the same time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .._metrics import registry as metrics
from .._metrics import task_labels
from ._actors import Actor
from ._contact import FENCE_MARGIN
from ._lifeline import Lifeline

logger = logging.getLogger("docket_nats.worker")

# How often the watch beats, at most (seconds); more often for short ack waits.
LONGEST_PERIOD = 1.0


class LoopWatch(Actor):
    name = "loop watch"

    def __init__(
        self,
        docket_name: str,
        lifeline: Lifeline,
        running: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self.docket_name = docket_name
        self.lifeline = lifeline
        self.running = running

    async def run(self) -> None:
        lifeline = self.lifeline
        lifeline.start()
        try:
            while True:
                lifeline.beat()
                ack_wait = lifeline.ack_wait()
                margin = ack_wait * FENCE_MARGIN
                period = min(LONGEST_PERIOD, margin / 4)
                before, rounds = time.monotonic(), lifeline.rounds
                await asyncio.sleep(period)
                blocked = time.monotonic() - before - period
                if blocked >= margin / 2:
                    self.report(blocked, ack_wait, lifeline.rounds - rounds)
        finally:
            lifeline.stop()

    def report(self, blocked: float, ack_wait: float, rounds: int) -> None:
        running = self.running()
        tasks = ", ".join(f"{name}{{{key}}}" for key, name in running) or "none"
        worker = self.lifeline.worker_name
        if rounds or blocked < ack_wait * (1 - FENCE_MARGIN):
            logger.warning(
                "worker %s: event loop blocked for %.2fs (redelivery timeout %.3gs; "
                "%d rounds of lease renewals from the lifeline thread meanwhile); "
                "running: %s. Blocking work belongs in a sync task or asyncio.to_thread()",
                worker,
                blocked,
                ack_wait,
                rounds,
                tasks,
            )
            return
        logger.error(
            "worker %s: event loop blocked for %.2fs, past the redelivery timeout "
            "(%.3gs) less the fence margin, and the lifeline renewed nothing: the "
            "leases of the tasks running here may have lapsed and a copy run elsewhere "
            "at the same time; running: %s",
            worker,
            blocked,
            ack_wait,
            tasks,
        )
        for _, name in running:
            metrics.count("docket_tasks_blocked_loop", task_labels(self.docket_name, name))
