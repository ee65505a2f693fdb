"""`docket-nats dead-letters`: list the tasks workers parked because they can never run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._wire import DeadLetter
from ._common import add_docket_options, docket_from

COLUMNS = ("key", "function", "reason", "parked_at", "worker")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dead-letters",
        help="list parked tasks (dead letters)",
        description="List the tasks workers parked because they can never run "
        "(unknown task, undecodable message, arguments that do not fit, "
        "delivered too often), oldest first, with the reason.",
    )
    add_docket_options(parser)
    parser.add_argument("--limit", type=int, default=None, help="list at most this many")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=list_dead_letters)


def as_row(letter: DeadLetter) -> dict[str, str | None]:
    return {
        "key": letter.key,
        "function": letter.function,
        "reason": letter.reason,
        "parked_at": letter.parked_at.isoformat(),
        "worker": letter.worker,
    }


def render_table(rows: list[dict[str, str | None]]) -> str:
    """Aligned columns; the reason, the longest, goes last on each line."""
    order = ("parked_at", "key", "function", "worker", "reason")
    cells = [[row[column] or "-" for column in order] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(order)
    ]
    lines = [order, *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


async def list_dead_letters(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments) as docket:
        letters = await docket.dead_letters(limit=arguments.limit)
    rows = [as_row(letter) for letter in letters]
    if arguments.json:
        for row in rows:
            print(json.dumps(row))
    elif rows:
        print(render_table(rows))
    else:
        print(f"no dead letters on docket {arguments.docket!r}")
    return 0
