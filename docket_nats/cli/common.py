"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..docket import Docket
from ..logging import FORMATS, configure


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
        "--replicas",
        type=int,
        default=int(os.environ.get("DOCKET_REPLICAS", "1")),
        help="JetStream replicas of the docket's streams and buckets, 1 or 3 on a "
        "cluster ($DOCKET_REPLICAS; default: 1)",
    )
    parser.add_argument(
        "--credentials",
        default=os.environ.get("DOCKET_CREDENTIALS") or None,
        help="NATS .creds file (JWT + nkey seed) to authenticate with "
        "($DOCKET_CREDENTIALS); user:password can go in the URL instead",
    )
    parser.add_argument(
        "--inbox-prefix",
        default=os.environ.get("DOCKET_INBOX_PREFIX") or None,
        help="reply-subject prefix, when the server's permissions confine each role "
        "to its own inboxes ($DOCKET_INBOX_PREFIX; default: _INBOX)",
    )
    parser.add_argument(
        "--logging-level",
        default=os.environ.get("DOCKET_LOGGING_LEVEL", "INFO").upper(),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log level ($DOCKET_LOGGING_LEVEL; default: INFO)",
    )
    parser.add_argument(
        "--logging-format",
        default=os.environ.get("DOCKET_LOGGING_FORMAT") or None,
        type=str.lower,
        choices=list(FORMATS),
        help="log format ($DOCKET_LOGGING_FORMAT; default: rich on a terminal, else plain)",
    )


def docket_from(arguments: argparse.Namespace, **options: Any) -> Docket:
    connect_options: dict[str, Any] = {}
    credentials = getattr(arguments, "credentials", None)
    if credentials:
        connect_options["user_credentials"] = credentials
    inbox_prefix = getattr(arguments, "inbox_prefix", None)
    if inbox_prefix:
        connect_options["inbox_prefix"] = inbox_prefix
    return Docket(
        name=arguments.docket,
        url=arguments.url,
        replicas=getattr(arguments, "replicas", 1),
        connect_options=connect_options,
        **options,
    )


def configure_logging(arguments: argparse.Namespace) -> None:
    configure(
        format=getattr(arguments, "logging_format", None),
        level=getattr(arguments, "logging_level", "INFO"),
    )
