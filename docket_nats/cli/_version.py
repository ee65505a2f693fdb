"""`docket-nats version`: the installed version."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "version", help="print the version", description="Print docket-nats's version."
    )
    parser.set_defaults(handler=print_version)


async def print_version(arguments: argparse.Namespace) -> int:
    from .. import __version__

    print(__version__)
    return 0
