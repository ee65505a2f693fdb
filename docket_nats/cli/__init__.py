"""The `docket-nats` command.

Each group of subcommands lives in its own module with a `register(subparsers)`
function; this module only assembles them and runs the chosen one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from nats.errors import NoServersError

from . import (
    clear,
    common,
    dead_letters,
    server,
    snapshot,
    strikes,
    tasks,
    version,
    watch,
    worker,
    workers,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docket-nats",
        description="Distributed background tasks on NATS JetStream (docket's API).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        worker,
        server,
        tasks,
        dead_letters,
        strikes,
        snapshot,
        watch,
        workers,
        clear,
        version,
    ):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    common.configure_logging(arguments)
    try:
        return asyncio.run(arguments.handler(arguments)) or 0
    except KeyboardInterrupt:
        # As docket's (Click's) commands: "Aborted!" and status 1.
        print("Aborted!", file=sys.stderr)
        return 1
    except NoServersError:
        where = getattr(arguments, "url", None) or "the embedded local server"
        print(f"docket-nats: cannot connect to NATS at {where}", file=sys.stderr)
        return 1
    except common.CommandError as error:
        print(f"docket-nats: {error}", file=sys.stderr)
        return error.status
