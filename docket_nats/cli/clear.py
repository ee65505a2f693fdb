"""`docket-nats clear`: remove every scheduled and queued task (asks first)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .common import CommandError, add_docket_options, docket_from


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clear",
        help="remove all scheduled and queued tasks",
        description="Remove every scheduled and queued task of the docket. Running "
        "tasks go on. Asks for confirmation unless --yes.",
    )
    add_docket_options(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask")
    parser.set_defaults(handler=clear_docket)


async def clear_docket(arguments: argparse.Namespace) -> int:
    if not arguments.yes:
        if not sys.stdin.isatty():
            raise CommandError("refusing to clear without confirmation: pass --yes")
        question = f"Remove all scheduled and queued tasks of {arguments.docket!r}? [y/N] "
        answer = await asyncio.to_thread(input, question)
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing cleared.")
            return 1
    async with docket_from(arguments) as docket:
        cleared = await docket.clear()
    print(f"Cleared {cleared} tasks from the docket {arguments.docket!r}.")
    return 0
