"""Built-in tasks, registered on every docket: trace, fail, sleep."""

from __future__ import annotations

import asyncio
import logging

from .execution import TaskFunction

logger = logging.getLogger("docket_nats.tasks")


async def trace(message: str) -> None:
    """Log `message` at INFO: shows that a worker picks up work."""
    logger.info("trace: %s", message)


async def fail(message: str) -> None:
    """Raise with `message`: for testing failure handling and alerting."""
    raise Exception(message)


async def sleep(seconds: float) -> None:
    """Sleep for `seconds`: for testing concurrency, timeouts and shutdown."""
    logger.info("sleeping for %s s", seconds)
    await asyncio.sleep(seconds)


standard_tasks: list[TaskFunction] = [trace, fail, sleep]
