"""`docket-nats dead-letters`: list the tasks workers parked because they can never run."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .._wire import DeadLetter
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
    app.command(
        "dead-letters",
        short_help="List the tasks workers parked because they can never run.",
        help="List the tasks workers parked because they can never run (unknown task, "
        "undecodable message, arguments that do not fit, delivered too often), oldest "
        "first, with the reason.",
        epilog="Example: docket-nats dead-letters --limit 20 --format json",
    )(docket_command()(dead_letters))


def dead_letters(
    target: Target,
    limit: Annotated[
        int | None,
        typer.Option(envvar="DOCKET_DEAD_LETTERS_LIMIT", help="list at most this many"),
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    json_flag: JsonFlag = False,
) -> None:
    rows = [as_row(letter) for letter in asyncio.run(parked(target, limit))]
    if wants_json(output_format, json_flag):
        for row in rows:
            json_line(row)
    elif rows:
        order = ("parked_at", "key", "function", "worker", "reason")
        shown = table(order)
        for row in rows:
            shown.add_row(*(row[column] or "-" for column in order))
        show(shown)
    else:
        say(f"no dead letters on docket {target.name!r}")


async def parked(target: Target, limit: int | None) -> list[DeadLetter]:
    async with docket_from(target) as docket:
        return list(await docket.dead_letters(limit=limit))


def as_row(letter: DeadLetter) -> dict[str, str | None]:
    return {
        "key": letter.key,
        "function": letter.function,
        "reason": letter.reason,
        "parked_at": letter.parked_at.isoformat(),
        "worker": letter.worker,
    }
