"""The `docket-nats` command.

Each group of subcommands lives in its own module with a `register(subparsers)`
function; this module only assembles them and runs the chosen one.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence

from nats.errors import NoServersError

from . import (
    _clear as clear,
)
from . import (
    _common as common,
)
from . import (
    _dead_letters as dead_letters,
)
from . import (
    _server as server,
)
from . import (
    _snapshot as snapshot,
)
from . import (
    _strikes as strikes,
)
from . import (
    _tasks as tasks,
)
from . import (
    _version as version,
)
from . import (
    _watch as watch,
)
from . import (
    _worker as worker,
)
from . import (
    _workers as workers,
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


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Options may come between positional words, as Click (docket's CLI) allows:
    `strike TASK --url URL PARAM OP VALUE`. argparse stops a `*` positional at
    the first option, so the words after it come back as extras, in order; a
    command that takes them says where (`trailing_words`)."""
    arguments, extras = parser.parse_known_args(argv)
    if extras:
        destination = getattr(arguments, "trailing_words", None)
        if destination is None or any(_looks_like_option(word) for word in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        getattr(arguments, destination).extend(extras)
    return arguments


def _looks_like_option(word: str) -> bool:
    return word.startswith("-") and re.fullmatch(r"-\d+(\.\d+)?", word) is None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parse(parser, argv)
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
