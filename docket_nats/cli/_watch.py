"""`docket-nats watch KEY`: follow one task's state and progress live."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._state_records import TERMINAL
from ..execution import ProgressEvent, StateEvent
from ._common import add_docket_options, docket_from

BAR_WIDTH = 30


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watch",
        help="follow a task's state and progress",
        description="Print a task's state and progress as they change, until it ends.",
    )
    # docket's watch alone reads $DOCKET_REDIS_URL and has -u / -d.
    add_docket_options(
        parser,
        url_environment=("DOCKET_REDIS_URL", "DOCKET_URL"),
        short_flags=True,
        allow_memory=True,
    )
    parser.add_argument("key", help="the task key")
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    parser.set_defaults(handler=watch_task)


def describe(event: StateEvent | ProgressEvent) -> str:
    if event["type"] == "state":
        worker = f" on {event['worker']}" if event["worker"] else ""
        error = f": {event['error']}" if event["error"] else ""
        return f"{event['state'].value}{worker}{error}"
    if event["current"] is None:
        return "no progress reported"
    done = min(1.0, event["current"] / max(1, event["total"]))
    filled = round(done * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    message = f" {event['message']}" if event["message"] else ""
    return f"[{bar}] {event['current']}/{event['total']}{message}"


async def watch_task(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments, lasting=True) as docket:
        execution = await docket.get_execution(arguments.key)
        if execution is None:
            # docket's message and exit status (0): nothing to watch is not a failure.
            print(
                f"Error: Task with key '{arguments.key}' not found or function not registered",
                flush=True,
            )
            return 0
        async for event in execution.subscribe():
            if arguments.json:
                print(
                    json.dumps(
                        {**event, "state": event["state"].value}
                        if event["type"] == "state"
                        else event
                    ),
                    flush=True,
                )
            else:
                print(describe(event), flush=True)
            if event["type"] == "state" and event["state"] in TERMINAL:
                break
    return 0
