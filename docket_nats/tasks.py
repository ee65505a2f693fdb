"""Built-in tasks, registered on every docket: trace, fail, sleep (docket's signatures).

`docket-nats tasks trace MSG` (and `fail`, `sleep`) add them from the command
line: a quick way to see that workers pick work up, fail visibly and hold slots.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

from .annotations import Logged
from .dependencies._contextual import CurrentDocket, CurrentExecution
from .dependencies._logger import TaskLogger
from .dependencies._retry import Retry
from .docket import Docket
from .execution import Execution, TaskFunction
from .worker._worker import CurrentWorker, Worker


async def trace(
    message: Annotated[str, Logged],
    logger: logging.LoggerAdapter[logging.Logger] = TaskLogger(),
    docket: Docket = CurrentDocket(),
    worker: Worker = CurrentWorker(),
    execution: Execution = CurrentExecution(),
) -> None:
    """Log `message` with where and how late the task ran: shows a worker picks up work."""
    logger.info(
        "%s: %r added to docket %r %s ago now running on worker %r",
        message,
        execution.key,
        docket.name,
        datetime.now(UTC) - execution.when,
        worker.name,
    )


async def fail(
    message: Annotated[str, Logged],
    docket: Docket = CurrentDocket(),
    worker: Worker = CurrentWorker(),
    execution: Execution = CurrentExecution(),
    retry: Retry = Retry(attempts=2),
) -> None:
    """Raise with `message` (retried once): for testing failure handling and alerting."""
    raise Exception(
        f"{message}: {execution.key} added to docket {docket.name} "
        f"{datetime.now(UTC) - execution.when} ago now running on worker {worker.name}"
    )


async def sleep(
    seconds: Annotated[float, Logged],
    logger: logging.LoggerAdapter[logging.Logger] = TaskLogger(),
) -> None:
    """Sleep for `seconds`: for testing concurrency, timeouts and shutdown."""
    logger.info("Sleeping for %s seconds", seconds)
    await asyncio.sleep(seconds)


standard_tasks: list[TaskFunction] = [trace, fail, sleep]
