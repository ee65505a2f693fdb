"""A worker running in the background, for the command-line tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from docket_nats import Docket, Worker


@asynccontextmanager
async def running_in_background(docket: Docket, worker: Worker) -> AsyncIterator[Worker]:
    """`worker.run_forever()` until the block ends, entered once its heartbeat
    is visible to `docket.workers()` (a KV write of its own; polled, bounded)."""
    running = asyncio.create_task(worker.run_forever())
    async with asyncio.timeout(10):
        while not await docket.workers():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    try:
        yield worker
    finally:
        worker.stop()
        await running
