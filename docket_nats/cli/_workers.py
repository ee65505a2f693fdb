"""`docket-nats workers` and `workers for-task TASK`: the live workers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._worker_registry import WorkerInfo
from ._common import add_docket_options, docket_from
from ._render import table


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "workers", help="list the live workers", description="List the live workers."
    )
    add_docket_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=list_workers, task=None)
    commands = parser.add_subparsers(dest="workers_command", metavar="COMMAND")
    # docket's spelling of the bare `workers` listing.
    listing = commands.add_parser(
        "ls", help="list the live workers", description="List the live workers."
    )
    add_docket_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=list_workers, task=None)
    for_task = commands.add_parser(
        "for-task",
        help="list the live workers that can run TASK",
        description="List the live workers that can run TASK.",
    )
    add_docket_options(for_task)
    for_task.add_argument("task", help="a task name")
    for_task.add_argument("--json", action="store_true", help="one JSON object per line")
    for_task.set_defaults(handler=list_workers)


async def list_workers(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments) as docket:
        if arguments.task is None:
            workers = await docket.workers()
        else:
            workers = await docket.task_workers(arguments.task)
    workers = sorted(workers, key=lambda worker: worker.name)
    if arguments.json:
        for worker in workers:
            print(json.dumps(as_row(worker)))
    elif workers:
        rows = [
            [w.name, str(w.running), str(w.concurrency), w.last_seen.isoformat(), str(len(w.tasks))]
            for w in workers
        ]
        print(f"Workers in Docket: {arguments.docket}")
        print(table(["WORKER", "RUNNING", "CONCURRENCY", "LAST SEEN", "TASKS"], rows))
    else:
        print("No workers." if arguments.task is None else f"No workers for {arguments.task!r}.")
    return 0


def as_row(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "name": worker.name,
        "last_seen": worker.last_seen.isoformat(),
        "concurrency": worker.concurrency,
        "running": worker.running,
        "tasks": sorted(worker.tasks),
    }
