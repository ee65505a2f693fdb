"""`docket-nats tasks trace|fail|sleep`: add a built-in task (see docket_nats.tasks)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from .. import tasks
from ..execution import TaskFunction
from ._common import Target, docket_command, docket_from, duration
from ._output import say

Delay = Annotated[
    timedelta,
    typer.Option(
        parser=duration,
        envvar="DOCKET_TASK_DELAY",
        metavar="DURATION",
        show_default="0",
        help="add it this much later (90, 90s, 5m, 1h, mm:ss, hh:mm:ss)",
    ),
]
Message = Annotated[str, typer.Argument(help="the message")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Add one of the built-in tasks (for trying out a worker).")

    @group.command(
        help="Add a task that logs MESSAGE on the worker.",
        epilog="Example: docket-nats tasks trace 'hello' --delay 5m",
    )
    @docket_command()
    def trace(target: Target, message: Message = "Howdy!", delay: Delay = timedelta(0)) -> None:
        add(target, tasks.trace, message, delay)

    @group.command(
        help="Add a task that fails with MESSAGE (retried once).",
        epilog="Example: docket-nats tasks fail 'on purpose'",
    )
    @docket_command()
    def fail(target: Target, message: Message = "Howdy!", delay: Delay = timedelta(0)) -> None:
        add(target, tasks.fail, message, delay)

    @group.command(
        help="Add a task that sleeps SECONDS.",
        epilog="Example: docket-nats tasks sleep 2.5 --delay 01:30",
    )
    @docket_command()
    def sleep(
        target: Target,
        seconds: Annotated[float, typer.Argument(help="how long")] = 1.0,
        delay: Delay = timedelta(0),
    ) -> None:
        add(target, tasks.sleep, seconds, delay)

    app.add_typer(group, name="tasks")


def add(target: Target, function: TaskFunction, value: Any, delay: timedelta) -> None:
    name, key, docket_name = asyncio.run(add_task(target, function, value, delay))
    say(f"Added {name} task {key!r} to the docket {docket_name!r}")


async def add_task(
    target: Target, function: TaskFunction, value: Any, delay: timedelta
) -> tuple[str, str, str]:
    async with docket_from(target) as docket:
        execution = await docket.add(function, datetime.now(UTC) + delay)(value)
        return execution.function_name, execution.key, docket.name
