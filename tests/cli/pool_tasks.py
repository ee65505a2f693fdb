"""The tasks of the process-pool tests' worker processes: the probe tasks of
`worker_process`, and one that keeps its process from stopping."""

from __future__ import annotations

import asyncio
import time

from worker_process import report
from worker_process import tasks as probe_tasks

from docket_nats import CurrentDocket, Docket


async def stall(label: str, docket: Docket = CurrentDocket()) -> None:
    """Reports that it started, then blocks a thread for a minute: cancelled
    after the grace, it still holds its process at exit (threads are joined)."""
    await report(docket, "started", label)
    await asyncio.to_thread(time.sleep, 60)


tasks = [*probe_tasks, stall]
