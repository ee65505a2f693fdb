"""Options and helpers shared by the subcommands.

The options take docket's names, environment variables and value syntax, so
that a deploy script written for docket's CLI runs unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .._embedded import MEMORY_SCHEME
from .._log_setup import FORMATS, configure
from ..docket import Docket


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2 (a usage error)
    unless told otherwise (1, as docket's, for what fails once the command runs)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# docket's own default collection, as a docket deploy script may spell it out.
_DOCKETS_STANDARD_TASKS = "docket.tasks:standard_tasks"


def collection_path(path: str) -> str:
    """A --tasks MODULE:ATTR; docket's built-in collection means ours."""
    return "docket_nats.tasks:standard_tasks" if path == _DOCKETS_STANDARD_TASKS else path


def imported(path: str, what: str) -> Any:
    """`module:member` (docket's syntax for --tasks, --fallback-task, --dependencies)."""
    module_name, _, member_name = path.rpartition(":")
    if not module_name or not member_name:
        raise CommandError(f"{what}: expected 'module:member', got {path!r}")
    try:
        return getattr(importlib.import_module(module_name), member_name)
    except (ImportError, AttributeError) as error:
        raise CommandError(f"{what}: cannot import {path!r}: {error}", status=1) from None


def environment(*names: str) -> str | None:
    """The first of these environment variables that is set to something."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


_TRUE = ("1", "true", "t", "yes", "y", "on")
_FALSE = ("0", "false", "f", "no", "n", "off")


def flag_from_environment(name: str, default: bool) -> bool:
    """A boolean environment variable, read with the words docket's CLI accepts."""
    value = environment(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise CommandError(f"${name}: {value!r} is not a valid boolean")


_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> timedelta:
    """docket's duration syntax: 90, 90s, 5m, 2h, mm:ss or hh:mm:ss (fractions allowed)."""
    text = text.strip()
    if ":" in text:
        try:
            parts = [int(part) for part in text.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (mm:ss or hh:mm:ss)")
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return timedelta(seconds=seconds)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30, 30s, 5m, 1h)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


# docket's own words: its CLI refuses a memory:// docket the same way, since
# such a docket lives and dies with the one process.
MEMORY_REFUSED = (
    "The memory:// URL scheme is not supported by the CLI.\n"
    "The memory backend does not persist across processes.\n"
    "Please use a persistent backend like Redis or Valkey."
)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")


def nats_url(text: str) -> str:
    """Refuses at once a Redis URL left over from docket (in $DOCKET_URL, say),
    which would otherwise be tried as a NATS server until the connection gives up."""
    if text.lower().startswith(_REDIS_SCHEMES):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a Redis URL; docket-nats needs a NATS one: nats://HOST:4222 "
            "(comma-separated for a cluster), or none for the embedded local server"
        )
    return text


def shared_url(text: str) -> str:
    """A URL other processes can reach: docket's CLI refuses memory:// here."""
    if text.startswith(MEMORY_SCHEME):
        raise argparse.ArgumentTypeError(MEMORY_REFUSED)
    return nats_url(text)


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def one_of(allowed: tuple[str, ...], normal: Callable[[str], str]) -> Callable[[str], str]:
    """A choice checked in the conversion, which argparse also applies to a default
    taken from the environment (its `choices` check skips defaults)."""

    def convert(text: str) -> str:
        value = normal(text)
        if value not in allowed:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(allowed)})"
            )
        return value

    return convert


def add_docket_options(
    parser: argparse.ArgumentParser,
    *,
    url_environment: tuple[str, ...] = ("DOCKET_URL",),
    short_flags: bool = False,
    allow_memory: bool = False,
) -> None:
    """--url and --docket (from $DOCKET_URL / $DOCKET_NAME as in docket), the NATS
    connection options, and the logging options."""
    url_flags = ["--url", "-u"] if short_flags else ["--url"]
    docket_flags = ["--docket", "-d"] if short_flags else ["--docket"]
    parser.add_argument(
        *url_flags,
        default=environment(*url_environment),
        type=nats_url if allow_memory else shared_url,
        help="NATS URL(s), comma-separated; default: the embedded local server "
        f"(${' or $'.join(url_environment)})"
        + ("; memory://NAME for an ephemeral one" if allow_memory else ""),
    )
    parser.add_argument(
        *docket_flags,
        default=environment("DOCKET_NAME") or "docket",
        help="docket name ($DOCKET_NAME; default: docket)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=environment("DOCKET_REPLICAS") or "1",
        help="JetStream replicas of the docket's streams and buckets, 1 or 3 on a "
        "cluster ($DOCKET_REPLICAS; default: 1)",
    )
    parser.add_argument(
        "--credentials",
        default=environment("DOCKET_CREDENTIALS"),
        help="NATS .creds file (JWT + nkey seed) to authenticate with "
        "($DOCKET_CREDENTIALS); user:password can go in the URL instead",
    )
    parser.add_argument(
        "--inbox-prefix",
        default=environment("DOCKET_INBOX_PREFIX"),
        help="reply-subject prefix, when the server's permissions confine each role "
        "to its own inboxes ($DOCKET_INBOX_PREFIX; default: _INBOX)",
    )
    parser.add_argument(
        "--logging-level",
        default=environment("DOCKET_LOGGING_LEVEL") or "INFO",
        type=one_of(LEVELS, str.upper),
        choices=LEVELS,
        help="log level ($DOCKET_LOGGING_LEVEL; default: INFO)",
    )
    parser.add_argument(
        "--logging-format",
        default=environment("DOCKET_LOGGING_FORMAT"),
        type=one_of(FORMATS, str.lower),
        choices=FORMATS,
        help="log format ($DOCKET_LOGGING_FORMAT; default: rich on a terminal, else plain)",
    )


# A one-shot command (clear, strike, snapshot, ...) gives up on an unreachable
# server after about two seconds and exits 1, as docket's does when Redis is
# down, rather than retrying forever as a long-lived Docket does.
ONE_SHOT_CONNECT_ATTEMPTS = 4


def docket_from(arguments: argparse.Namespace, *, lasting: bool = False, **options: Any) -> Docket:
    """The Docket the options name; `lasting` (worker, watch): reconnect forever."""
    connect_options: dict[str, Any] = {}
    if not lasting:
        connect_options["max_reconnect_attempts"] = ONE_SHOT_CONNECT_ATTEMPTS
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
