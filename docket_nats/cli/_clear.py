"""`docket-nats clear`: remove every scheduled and queued task, as docket's `clear`.

Like docket's it does not ask: scripts and tests call it unattended.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ._common import Target, docket_command, docket_from
from ._output import say


def register(app: typer.Typer) -> None:
    app.command(
        help="Remove every scheduled and queued task of the docket and print how many. "
        "Running tasks go on.",
        epilog="Example: docket-nats clear --url nats://nats:4222 --docket orders",
    )(docket_command()(clear))


def clear(
    target: Target,
    # Scripts written for an earlier docket-nats passed --yes to skip a prompt
    # that is gone (docket never asks); it stays accepted.
    yes: Annotated[bool, typer.Option("--yes", "-y", hidden=True)] = False,
) -> None:
    cleared = asyncio.run(clear_docket(target))
    say(f"Cleared {cleared} tasks from docket '{target.name}'")


async def clear_docket(target: Target) -> int:
    async with docket_from(target) as docket:
        return await docket.clear()
