"""The loop watch: reports a worker whose event loop was blocked.

Leases are renewed, and the fence kept, by coroutines on the worker's event
loop. An async task that blocks the loop (CPU work, `time.sleep`, a blocking
call, with no await) stops both: blocked for longer than the redelivery timeout
less the fence margin, its own and every other held lease may lapse, the server
redelivers them, and another worker runs them while this one still does
(measured: tests/worker/test_blocked_loop.py; docs/architecture.md, "A blocked
event loop"). Nothing on the loop can prevent that; this actor says it happened,
as soon as the loop runs again: a WARNING when the block ate into the fence's
margin, an ERROR naming the tasks that were running (one of them blocked) and
the counter `docket_tasks_blocked_loop` when leases may have lapsed. When the
loop wakes, the fence finds the deadline passed and cancels those runs.
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

logger = logging.getLogger("docket_nats.worker")

# How often the watch looks, at most (seconds); more often for short ack waits.
LONGEST_PERIOD = 1.0


class LoopWatch(Actor):
    name = "loop watch"

    def __init__(
        self,
        docket_name: str,
        worker_name: str,
        ack_wait: Callable[[], float],
        running: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self.docket_name = docket_name
        self.worker_name = worker_name
        self.ack_wait = ack_wait
        self.running = running

    async def run(self) -> None:
        while True:
            ack_wait = self.ack_wait()
            margin = ack_wait * FENCE_MARGIN
            period = min(LONGEST_PERIOD, margin / 4)
            before = time.monotonic()
            await asyncio.sleep(period)
            blocked = time.monotonic() - before - period
            if blocked >= margin / 2:
                self.report(blocked, ack_wait)

    def report(self, blocked: float, ack_wait: float) -> None:
        running = self.running()
        tasks = ", ".join(f"{name}{{{key}}}" for key, name in running) or "none"
        if blocked < ack_wait * (1 - FENCE_MARGIN):
            logger.warning(
                "worker %s: event loop blocked for %.2fs (redelivery timeout %.3gs); running: %s",
                self.worker_name,
                blocked,
                ack_wait,
                tasks,
            )
            return
        logger.error(
            "worker %s: event loop blocked for %.2fs, past the redelivery timeout "
            "(%.3gs) less the fence margin: the leases of the tasks running here may "
            "have lapsed and a copy run elsewhere at the same time; running: %s. "
            "Blocking work belongs in a sync task (run in a thread, its lease kept) "
            "or asyncio.to_thread()",
            self.worker_name,
            blocked,
            ack_wait,
            tasks,
        )
        for _, name in running:
            metrics.count("docket_tasks_blocked_loop", task_labels(self.docket_name, name))
