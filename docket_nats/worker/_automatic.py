"""The automatic-task seeder: one chain per automatic Perpetual / Cron, always.

When the worker starts, and every `interval` after, it adds each registered task
that declares `Perpetual(automatic=True)` (or a Cron) under the key of its
function's name. A key with a message in the work stream (scheduled, queued or
running) is skipped before its first time is asked for, since a Cron's
`next_time()` moves on with every call; and the server refuses the add if the
key was taken in between (no lock, no leader). So any number of workers give
exactly one chain, and a chain that was severed (its message parked, a
`perpetual.cancel()`, a strike lifted) comes back at the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .._state_records import read_work
from ..dependencies._perpetual import Perpetual
from ..dependencies._plans import plan_for
from ..execution import Disposition, TaskFunction
from ._actors import Actor

if TYPE_CHECKING:
    from ..docket import Docket

logger = logging.getLogger("docket_nats.worker")

# How often a worker re-ensures the automatic chains. A live chain costs one
# refused publish per task per pass.
RESEED_INTERVAL = 10.0


def automatic_perpetual(function: TaskFunction) -> Perpetual | None:
    """The task's Perpetual (or Cron) when it is declared automatic."""
    for dependency in plan_for(function).parameters.values():
        if isinstance(dependency, Perpetual) and dependency.automatic:
            return dependency
    return None


class AutomaticTasks(Actor):
    name = "automatic-tasks"

    def __init__(self, docket: Docket, interval: float = RESEED_INTERVAL) -> None:
        self.docket = docket
        self.interval = interval

    async def run(self) -> None:
        while True:
            await self.seed()
            await asyncio.sleep(self.interval)

    async def seed(self) -> None:
        """Add every automatic task whose chain is missing (the others are refused)."""
        declared = [
            (function, perpetual)
            for function in dict.fromkeys(self.docket.tasks.values())
            if (perpetual := automatic_perpetual(function)) is not None
        ]
        if not declared:
            return
        live = await asyncio.gather(
            *(read_work(self.docket.context, function.__name__) for function, _ in declared)
        )
        # `initial_when` only for the missing chains: a Cron's next_time()
        # moves on with every call, so asking for a live chain would push the
        # first tick of a later reseed into the future (docket skips them too).
        calls = [
            self.docket.call(function, when=perpetual.initial_when, key=function.__name__)()
            for (function, perpetual), work in zip(declared, live, strict=True)
            if work is None
        ]
        if not calls:
            return
        for execution in await self.docket.add_many(calls):
            if execution.disposition is Disposition.SCHEDULED:
                logger.info("started the automatic task %s", execution.key)
            elif execution.disposition is Disposition.FAILED:
                logger.warning(
                    "could not ensure the automatic task %s: %s",
                    execution.key,
                    getattr(execution, "schedule_exception", "unknown error"),
                )
