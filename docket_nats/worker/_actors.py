"""Actors and their supervisor.

Each concern of a worker is an actor: one asyncio task with one job and, where it
receives work, a mailbox. The supervisor restarts an actor that crashes (logged,
with backoff), so one bug in one concern does not take the worker down.
"""

from __future__ import annotations

import abc
import asyncio
import logging

logger = logging.getLogger("docket_nats.worker")

RESTART_BACKOFF_FIRST = 0.05
RESTART_BACKOFF_MAX = 5.0


class Actor(abc.ABC):
    """One concern of a worker, run (and re-run after a crash) by the Supervisor."""

    name: str = "actor"

    @abc.abstractmethod
    async def run(self) -> None:
        """Do the job until done or cancelled; raising means 'restart me'."""


class Supervisor:
    """Runs actors; restarts the ones that crash; stops them all together."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, actor: Actor) -> None:
        if actor.name in self._tasks:
            raise ValueError(f"an actor named {actor.name!r} is already running")
        self._tasks[actor.name] = asyncio.create_task(
            self._supervise(actor), name=f"{self.owner}:{actor.name}"
        )

    async def _supervise(self, actor: Actor) -> None:
        backoff = RESTART_BACKOFF_FIRST
        while True:
            try:
                await actor.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts[actor.name] = self.restarts.get(actor.name, 0) + 1
                logger.exception(
                    "actor %r of %s crashed; restarting it in %.2fs",
                    actor.name,
                    self.owner,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def stop(self, name: str | None = None) -> None:
        """Cancel one actor (or all) and wait for it to end."""
        names = [name] if name is not None else list(self._tasks)
        pending = {self._tasks.pop(each) for each in names if each in self._tasks}
        await cancel_until_done(pending)


async def cancel_until_done(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel the tasks until they end.

    Once is not enough: Python 3.11's asyncio.wait_for (inside nats-py's
    requests) swallows a cancellation that races with the reply, and a task that
    carried on would outlive its worker (seen: worker stop hanging).
    """
    pending = tasks
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
