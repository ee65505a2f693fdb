"""`docket-nats workers [ls]` and `workers for-task TASK`: the live workers."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from .._worker_registry import WorkerInfo
from ._common import Target, docket_command, docket_from
from ._output import (
    FormatOption,
    JsonFlag,
    OutputFormat,
    json_line,
    say,
    show,
    table,
    wants_json,
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="List the live workers (bare `workers` is `workers ls`).",
        epilog="Examples: docket-nats workers ls --format json; docket-nats workers for-task trace",
        invoke_without_command=True,
    )

    @group.callback()
    @docket_command()
    def everyone(
        target: Target,
        context: typer.Context,
        output_format: FormatOption = OutputFormat.TABLE,
        json_flag: JsonFlag = False,
    ) -> None:
        # Typer hands the group's options to this callback; with a subcommand
        # named, that subcommand does the listing.
        if context.invoked_subcommand is None:
            list_workers(target, None, wants_json(output_format, json_flag))

    @group.command("ls", help="List the live workers.")
    @docket_command()
    def listing(
        target: Target,
        output_format: FormatOption = OutputFormat.TABLE,
        json_flag: JsonFlag = False,
    ) -> None:
        list_workers(target, None, wants_json(output_format, json_flag))

    @group.command("for-task", help="List the live workers that can run TASK.")
    @docket_command()
    def for_task(
        target: Target,
        task: Annotated[str, typer.Argument(help="a task name")],
        output_format: FormatOption = OutputFormat.TABLE,
        json_flag: JsonFlag = False,
    ) -> None:
        list_workers(target, task, wants_json(output_format, json_flag))

    app.add_typer(group, name="workers")


def list_workers(target: Target, task: str | None, as_json: bool) -> None:
    workers = sorted(asyncio.run(live_workers(target, task)), key=lambda worker: worker.name)
    if as_json:
        for worker in workers:
            json_line(as_row(worker))
    elif workers:
        show(workers_table(workers, f"Workers in Docket: {target.name}"))
    else:
        say("No workers." if task is None else f"No workers for {task!r}.")


async def live_workers(target: Target, task: str | None) -> list[WorkerInfo]:
    async with docket_from(target) as docket:
        return list(await (docket.workers() if task is None else docket.task_workers(task)))


def workers_table(workers: list[WorkerInfo], title: str) -> Table:
    shown = table(["WORKER", "RUNNING", "CONCURRENCY", "LAST SEEN", "TASKS"], title=title)
    for worker in workers:
        shown.add_row(
            worker.name,
            str(worker.running),
            str(worker.concurrency),
            worker.last_seen.isoformat(timespec="seconds"),
            str(len(worker.tasks)),
        )
    return shown


def as_row(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "name": worker.name,
        "last_seen": worker.last_seen.isoformat(),
        "concurrency": worker.concurrency,
        "running": worker.running,
        "tasks": sorted(worker.tasks),
    }
