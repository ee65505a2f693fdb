"""Options and helpers shared by the subcommands.

The options take docket's names, environment variables and value syntax, so
that a deploy script written for docket's CLI runs unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from nats.errors import NoServersError

from .._embedded import MEMORY_SCHEME
from .._log_setup import configure
from ..docket import Docket


class CommandError(Exception):
    """A user error: one line without a traceback, with the fix when there is one;
    exit status 2 (a usage error) unless told otherwise (1, as docket's, for what
    fails once the command runs)."""

    def __init__(self, message: str, status: int = 2, fix: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.fix = fix


# docket's own default collection, as a docket deploy script may spell it out.
_DOCKETS_STANDARD_TASKS = "docket.tasks:standard_tasks"


def collection_path(path: str) -> str:
    """A --tasks MODULE:ATTR; docket's built-in collection means ours."""
    return "docket_nats.tasks:standard_tasks" if path == _DOCKETS_STANDARD_TASKS else path


def register_collections(docket: Docket, paths: list[str]) -> None:
    for path in paths:
        try:
            docket.register_collection(collection_path(path))
        except (ImportError, AttributeError, ValueError, TypeError) as error:
            raise CommandError(
                f"--tasks {path!r}: {error}",
                status=1,
                fix="give an importable MODULE:ATTR holding a list of task functions",
            ) from None


def imported(path: str, what: str) -> Any:
    """`module:member` (docket's syntax for --tasks, --fallback-task, --dependencies)."""
    module_name, _, member_name = path.rpartition(":")
    if not module_name or not member_name:
        raise CommandError(f"{what}: expected 'module:member', got {path!r}")
    try:
        return getattr(importlib.import_module(module_name), member_name)
    except (ImportError, AttributeError) as error:
        raise CommandError(
            f"{what}: cannot import {path!r}: {error}",
            status=1,
            fix="check the module is on PYTHONPATH and defines that name",
        ) from None


_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str | timedelta) -> timedelta:
    """docket's duration syntax: 90, 90s, 5m, 2h, mm:ss or hh:mm:ss (fractions allowed).

    Typer hands it the option's default too, already a timedelta. Raises
    BadParameter, which Typer reports as an invalid value of the option."""
    if isinstance(text, timedelta):
        return text
    text = text.strip()
    if ":" in text:
        try:
            parts = [int(part) for part in text.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3):
            raise typer.BadParameter(f"invalid duration {text!r} (mm:ss or hh:mm:ss)")
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return timedelta(seconds=seconds)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text)
    if match is None:
        raise typer.BadParameter(f"invalid duration {text!r} (e.g. 30, 30s, 5m, 1h)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


# docket's own words, on one line: its CLI refuses a memory:// docket the same
# way, since such a docket lives and dies with the one process.
MEMORY_REFUSED = (
    "The memory:// URL scheme is not supported by the CLI. "
    "The memory backend does not persist across processes. "
    "Please use a persistent backend like Redis or Valkey."
)


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")


def nats_url(text: str) -> str:
    """Refuses at once a Redis URL left over from docket (in $DOCKET_URL, say),
    which would otherwise be tried as a NATS server until the connection gives up."""
    if text.lower().startswith(_REDIS_SCHEMES):
        raise typer.BadParameter(
            f"{text!r} is a Redis URL; docket-nats needs a NATS one: nats://HOST:4222 "
            "(comma-separated for a cluster), or none for the embedded local server"
        )
    return text


def shared_url(text: str) -> str:
    """A URL other processes can reach: docket's CLI refuses memory:// here."""
    if text.startswith(MEMORY_SCHEME):
        raise typer.BadParameter(MEMORY_REFUSED)
    return nats_url(text)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogFormat(StrEnum):
    # The formats of docket_nats._log_setup.
    RICH = "rich"
    PLAIN = "plain"
    JSON = "json"


@dataclass(frozen=True)
class Target:
    """The docket a command works on, and how to reach its server."""

    url: str | None
    name: str
    replicas: int
    credentials: str | None
    inbox_prefix: str | None


CONNECTION_PANEL = "Docket and connection"


def _keyword_option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


# The options of the docket's server side every command takes.
_SERVER_PARAMETERS = [
    _keyword_option(
        "replicas",
        Annotated[
            int,
            typer.Option(
                "--replicas",
                envvar="DOCKET_REPLICAS",
                rich_help_panel=CONNECTION_PANEL,
                help="JetStream replicas of the docket's streams and buckets (3 on a cluster)",
            ),
        ],
        1,
    ),
    _keyword_option(
        "credentials",
        Annotated[
            str | None,
            typer.Option(
                "--credentials",
                envvar="DOCKET_CREDENTIALS",
                rich_help_panel=CONNECTION_PANEL,
                metavar="FILE",
                help="NATS .creds file (JWT + nkey seed); user:password can go in the URL",
            ),
        ],
        None,
    ),
    _keyword_option(
        "inbox_prefix",
        Annotated[
            str | None,
            typer.Option(
                "--inbox-prefix",
                envvar="DOCKET_INBOX_PREFIX",
                rich_help_panel=CONNECTION_PANEL,
                show_default="_INBOX",
                help="reply-subject prefix, when permissions confine each role to its inboxes",
            ),
        ],
        None,
    ),
]

# The logging options every command takes (the same for all of them).
_LOGGING_PARAMETERS = [
    _keyword_option(
        "logging_level",
        Annotated[
            LogLevel,
            typer.Option(
                "--logging-level",
                envvar="DOCKET_LOGGING_LEVEL",
                case_sensitive=False,
                rich_help_panel="Logging",
                help="log level",
            ),
        ],
        LogLevel.INFO,
    ),
    _keyword_option(
        "logging_format",
        Annotated[
            LogFormat | None,
            typer.Option(
                "--logging-format",
                envvar="DOCKET_LOGGING_FORMAT",
                case_sensitive=False,
                rich_help_panel="Logging",
                show_default="rich on a terminal, else plain",
                help="log format",
            ),
        ],
        None,
    ),
]


def _shared_parameters(
    url_flags: tuple[str, ...], docket_flags: tuple[str, ...], url_environment: tuple[str, ...],
    allow_memory: bool,
) -> list[inspect.Parameter]:  # fmt: skip
    panel = CONNECTION_PANEL
    # A list shows as "['A', 'B']" in Typer's errors: one name stays a name.
    first, *others = url_environment
    url_variables: str | list[str] = [first, *others] if others else first
    return [
        _keyword_option(
            "url",
            Annotated[
                str | None,
                typer.Option(
                    *url_flags,
                    envvar=url_variables,
                    parser=nats_url if allow_memory else shared_url,
                    metavar="URL",
                    show_default="the embedded local server",
                    rich_help_panel=panel,
                    help="NATS URL(s), comma-separated for a cluster"
                    + ("; memory://NAME for a docket of this process only" if allow_memory else ""),
                ),
            ],
            None,
        ),
        _keyword_option(
            "docket_name",
            Annotated[
                str,
                typer.Option(
                    *docket_flags,
                    envvar="DOCKET_NAME",
                    rich_help_panel=panel,
                    help="the docket's name",
                ),
            ],
            "docket",
        ),
        *_SERVER_PARAMETERS,
        *_LOGGING_PARAMETERS,
    ]


_SHARED_NAMES = (
    "url", "docket_name", "replicas", "credentials", "inbox_prefix",
    "logging_level", "logging_format",
)  # fmt: skip


def docket_command(
    *,
    url_flags: tuple[str, ...] = ("--url",),
    docket_flags: tuple[str, ...] = ("--docket",),
    url_environment: tuple[str, ...] = ("DOCKET_URL",),
    allow_memory: bool = False,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Gives a command the options every docket command shares (--url, --docket,
    the connection and logging options) without each one spelling them out: the
    command takes a `target: Target` first, and Typer sees the options instead.

    Logging is configured before the command runs; a server that cannot be
    reached becomes one line naming the URL and exit status 1."""
    shared = _shared_parameters(url_flags, docket_flags, url_environment, allow_memory)

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "target"]

        def run(**values: Any) -> None:
            shared_values = {name: values.pop(name) for name in _SHARED_NAMES}
            target = Target(
                url=shared_values["url"],
                name=shared_values["docket_name"],
                replicas=shared_values["replicas"],
                credentials=shared_values["credentials"],
                inbox_prefix=shared_values["inbox_prefix"],
            )
            level: LogLevel = shared_values["logging_level"]
            log_format: LogFormat | None = shared_values["logging_format"]
            configure(format=None if log_format is None else log_format.value, level=level.value)
            try:
                command(target, **values)
            except NoServersError:
                raise CommandError(
                    f"cannot connect to NATS at {target.url or 'the embedded local server'}",
                    status=1,
                    fix="is nats-server running there? Check --url / $DOCKET_URL",
                ) from None

        parameters = [*own, *shared]
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.__name__ = command.__name__
        run.__qualname__ = command.__qualname__
        run.__doc__ = command.__doc__
        return run

    return decorate


# A one-shot command (clear, strike, snapshot, ...) gives up on an unreachable
# server after about two seconds and exits 1, as docket's does when Redis is
# down, rather than retrying forever as a long-lived Docket does.
ONE_SHOT_CONNECT_ATTEMPTS = 4


def docket_from(target: Target, *, lasting: bool = False, **options: Any) -> Docket:
    """The Docket the options name; `lasting` (worker, watch): reconnect forever."""
    connect_options: dict[str, Any] = {}
    if not lasting:
        connect_options["max_reconnect_attempts"] = ONE_SHOT_CONNECT_ATTEMPTS
    if target.credentials:
        connect_options["user_credentials"] = target.credentials
    if target.inbox_prefix:
        connect_options["inbox_prefix"] = target.inbox_prefix
    return Docket(
        name=target.name,
        url=target.url,
        replicas=target.replicas,
        connect_options=connect_options,
        **options,
    )
