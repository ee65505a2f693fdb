"""`docket-nats tasks trace|fail|sleep`: add a built-in task (see docket_nats.tasks)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import tasks
from ..execution import TaskFunction
from ._common import add_docket_options, docket_from, duration


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tasks", help="add a built-in task", description="Add one of the built-in tasks."
    )
    commands = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, help_text, argument in (
        ("trace", "add a task that logs MESSAGE on the worker", "message"),
        ("fail", "add a task that fails with MESSAGE (retried once)", "message"),
        ("sleep", "add a task that sleeps SECONDS", "seconds"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        add_docket_options(command)
        if argument == "message":
            command.add_argument("message", nargs="?", default="Howdy!", help="the message")
        else:
            command.add_argument("seconds", nargs="?", type=float, default=1.0)
        command.add_argument(
            "--delay",
            type=duration,
            default=timedelta(0),
            help="add it this much later (docket's durations: 90, 90s, 5m, 1h, mm:ss, hh:mm:ss)",
        )
        command.set_defaults(handler=add_task, function=getattr(tasks, name), argument=argument)


async def add_task(arguments: argparse.Namespace) -> int:
    function: TaskFunction = arguments.function
    value = getattr(arguments, arguments.argument)
    async with docket_from(arguments) as docket:
        when = datetime.now(UTC) + arguments.delay
        execution = await docket.add(function, when)(value)
        print(
            f"Added {execution.function_name} task {execution.key!r} to the docket {docket.name!r}",
            flush=True,
        )
    return 0
