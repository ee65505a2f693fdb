"""`docket-nats clear`: remove every scheduled and queued task, as docket's `clear`.

Like docket's it does not ask: scripts and tests call it unattended.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_docket_options, docket_from


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clear",
        help="remove all scheduled and queued tasks",
        description="Remove every scheduled and queued task of the docket and print how "
        "many. Running tasks go on.",
    )
    add_docket_options(parser)
    # Scripts written for an earlier docket-nats passed --yes to skip a prompt
    # that is gone (docket never asks); it stays accepted.
    parser.add_argument("--yes", "-y", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=clear_docket)


async def clear_docket(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments) as docket:
        cleared = await docket.clear()
    print(f"Cleared {cleared} tasks from docket '{arguments.docket}'", flush=True)
    return 0
