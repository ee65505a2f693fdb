"""The main job: a worker on the embedded NATS server running the examples.

    python -m examples.demo

Starts (or reuses) the local nats-server, adds the example tasks, runs a worker
until they are done (the perpetual health check three times), and prints what ran.
"""

from __future__ import annotations

import asyncio
import logging

from docket_nats import Docket, Worker

from . import chain, find_and_flood, health_check, pipeline

all_tasks = [*health_check.tasks, *find_and_flood.tasks, *chain.tasks, *pipeline.tasks]


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    async with Docket(name="examples") as docket:  # no URL: the embedded server
        for task in all_tasks:
            docket.register(task)
        await docket.add(find_and_flood.find_overdue_invoices)(batch=20)
        await docket.add(chain.validate_order)(chain.Order("order-1", 99.5))
        await docket.add(chain.validate_order)(chain.Order("order-2", 12.0))
        await pipeline.start(docket)

        async with Worker(docket, concurrency=10) as worker:
            # The automatic health check re-schedules itself forever; stop it after 3.
            await worker.run_at_most({"check_health": 3})

    print()
    print(f"health checks run:   {len(health_check.checks_run)}")
    print(f"reminders sent:      {len(find_and_flood.processed)}")
    print(f"orders shipped:      {sorted(chain.finished)}")
    print(f"pipeline report:     {pipeline.reports}")


if __name__ == "__main__":
    asyncio.run(main())
