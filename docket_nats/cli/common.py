"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from ..docket import Docket


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def add_docket_options(parser: argparse.ArgumentParser) -> None:
    """--url and --docket, defaulting to $DOCKET_URL / $DOCKET_NAME as docket's CLI."""
    parser.add_argument(
        "--url",
        default=os.environ.get("DOCKET_URL"),
        help="NATS URL(s), comma-separated; default: the embedded local server "
        "($DOCKET_URL); memory://NAME for an ephemeral one",
    )
    parser.add_argument(
        "--docket",
        default=os.environ.get("DOCKET_NAME", "docket"),
        help="docket name ($DOCKET_NAME; default: docket)",
    )
    parser.add_argument(
        "--logging-level",
        default=os.environ.get("DOCKET_LOGGING_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log level (default: INFO)",
    )


def docket_from(arguments: argparse.Namespace, **options: Any) -> Docket:
    return Docket(name=arguments.docket, url=arguments.url, **options)


def configure_logging(arguments: argparse.Namespace) -> None:
    level = getattr(arguments, "logging_level", "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
