"""Log output: structlog renders, the standard library carries.

docket-nats logs through the standard library (`logging.getLogger("docket_nats.…")`,
and `TaskLogger()` is a `logging.LoggerAdapter`), so every record reaches the
handlers an application already has: pytest's caplog, a file handler, a log
shipper. Nothing is configured on import. `configure()` (what the CLI calls)
installs one handler on the root logger whose formatter is structlog's
`ProcessorFormatter`, and routes structlog's own loggers into the same handler,
so both kinds of records render alike:

- `rich`: for people at a terminal: local time, level, message, the logger, colors
  when the stream is a TTY (structlog's ConsoleRenderer);
- `plain`: one uncolored line, `2026-05-01T12:00:00.123Z INFO docket_nats.worker: ...`;
- `json`: one JSON object per line with every field: the run's context
  (`docket.task`, `docket.key`, `docket.attempt`, `docket.worker`,
  `docket.name`, `docket.when`), `duration`, `outcome`, a caller's `extra`.

A record logged while a task runs gets that run's context even when it did
not pass it (an application's own `logging.getLogger(__name__)` in a task, a
Retry's line), from the worker's context variables.

Tracebacks render as plain text without frame locals, whatever is installed:
structlog's defaults (rich's traceback, its dict tracebacks) show locals, and
a task's locals are where its secrets live.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Literal, TextIO, cast, get_args

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ._run_log import task_fields
from .dependencies._base import current_execution, current_worker_context

Format = Literal["rich", "plain", "json"]
FORMATS: tuple[str, ...] = get_args(Format)

# Attributes every LogRecord has (and two the stdlib formatters add): anything
# else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Run context and metrics: fields for JSON, noise on a human line (the call
# line already names the run).
_CONTEXT_FIELDS = frozenset(
    {
        "docket.name",
        "docket.task",
        "docket.key",
        "docket.when",
        "docket.attempt",
        "docket.worker",
        "punctuality",
        "duration",
        "outcome",
    }
)


def _add_record_extras(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's `extra=` fields, as event fields."""
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in event_dict:
                event_dict[key] = value
    return event_dict


def _add_run_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The running task's context, for records that did not bring their own."""
    if "docket.key" in event_dict:
        return event_dict
    execution = current_execution.get(None)
    if execution is None:
        return event_dict
    worker = current_worker_context.get(None)
    for key, value in task_fields(execution, worker.name if worker else None).items():
        event_dict.setdefault(key, value)
    return event_dict


def _drop_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in _CONTEXT_FIELDS.intersection(event_dict):
        del event_dict[key]
    return event_dict


class _Clock:
    """Record times as text: `12:00:00.123` (local) or `2026-05-01T12:00:00.123Z` (UTC).

    A busy worker logs thousands of lines a second, dozens in each
    millisecond: the whole-second part is formatted once per second, the
    text once per millisecond.
    """

    def __init__(self, short: bool) -> None:
        self._short = short
        # (second, its text) and (millisecond, its text), each replaced as one
        # object: threads may log at once.
        self._second: tuple[int, str] = (-1, "")
        self._millisecond: tuple[int, str] = (-1, "")

    def text(self, created: float) -> str:
        millisecond = int(created * 1000)
        cached = self._millisecond
        if cached[0] == millisecond:
            return cached[1]
        second, millis = divmod(millisecond, 1000)  # the text follows from the key alone
        state = self._second
        if state[0] != second:
            if self._short:
                state = (second, time.strftime("%H:%M:%S", time.localtime(second)))
            else:
                state = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = state
        text = f"{state[1]}.{millis:03d}" if self._short else f"{state[1]}.{millis:03d}Z"
        self._millisecond = (millisecond, text)
        return text


def _timestamper(clock: _Clock) -> Processor:
    """The record's own time (when it was logged, not rendered), UTC for machines."""

    def add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        record: logging.LogRecord | None = event_dict.get("_record")
        event_dict["timestamp"] = clock.text(record.created if record is not None else time.time())
        return event_dict

    return add_timestamp


def _shared_processors(clock: _Clock) -> list[Processor]:
    """What both stdlib records and structlog events go through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamper(clock),
        _add_run_context,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ]


# msgspec (already the wire codec) encodes a line ~5x faster than the json module;
# what it cannot encode (an `extra` object) is written as its repr.
_json_encoder = msgspec.json.Encoder(enc_hook=repr)


def _render_plain(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """`2026-05-01T12:00:00.123Z INFO docket_nats.worker: message key=value`."""
    timestamp = event_dict.pop("timestamp", "")
    level = str(event_dict.pop("level", "")).upper()
    logger = event_dict.pop("logger", "")
    event = event_dict.pop("event", "")
    exception = event_dict.pop("exception", None)
    line = f"{timestamp} {level} {logger}: {event}"
    if event_dict:
        line += " " + " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    return f"{line}\n{exception}" if exception else line


def _encode_json(event_dict: Any, **_: Any) -> str:
    return _json_encoder.encode(event_dict).decode()


def _renderer(format: Format, colors: bool) -> list[Processor]:
    if format == "json":
        return [
            structlog.processors.format_exc_info,  # plain traceback text, no locals
            structlog.processors.JSONRenderer(serializer=_encode_json),
        ]
    if format == "plain":
        return [
            _drop_context,
            structlog.processors.format_exc_info,  # plain traceback text, no locals
            _render_plain,
        ]
    return [
        _drop_context,
        structlog.dev.ConsoleRenderer(
            colors=colors,
            pad_event_to=0,
            exception_formatter=structlog.dev.plain_traceback,  # never rich's (locals)
        ),
    ]


# Keys the processor chain sets itself (overwriting or skipping an `extra=` of
# that name): a record carrying one goes through the chain, which decides.
_CHAIN_KEYS = frozenset(
    {"event", "level", "logger", "timestamp", "exception", "_record", "_from_structlog"}
)
# A record with no other attributes (the worker's run lines) has nothing for
# the plain line and only the context for JSON.
_QUIET = _RECORD_ATTRIBUTES | _CONTEXT_FIELDS


def _extras(attributes: dict[str, Any]) -> list[str] | None:
    """A record's `extra=` attributes in its order (None if the chain must decide)."""
    names = attributes.keys() - _RECORD_ATTRIBUTES
    if not names.isdisjoint(_CHAIN_KEYS):
        return None
    return [key for key in attributes if key in names]


# structlog's registry of the context variables `bind_contextvars` made (None
# if a structlog version has none: then every record takes the chain).
_structlog_variables = cast(
    dict[str, ContextVar[Any]] | None, getattr(structlog.contextvars, "_CONTEXT_VARS", None)
)


def _structlog_context_bound() -> bool:
    """Whether structlog context variables may have something to merge here.

    `merge_contextvars` walks every context variable of the context (the
    worker's tasks have many) to find structlog's by name; its registry says
    at once that there are none, the usual case, or which to look at. (A
    `ContextVar("structlog_…")` made by hand, outside `bind_contextvars`, is
    not looked for.)
    """
    if _structlog_variables is None:
        return True
    if not _structlog_variables:
        return False
    for variable in list(_structlog_variables.values()):  # other threads may add some
        if variable.get(...) is not ...:
            return True
    return False


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's ProcessorFormatter, with shorter paths for stdlib records.

    The stock one copies each record and runs the stdlib formatting over the
    rendered line; a standard-library record needs neither (these paths leave
    the record untouched), and the worker logs two of them per task. For
    `plain` and `json` the usual record (no traceback, no structlog context
    variables) skips the processor chain too: the line is built directly, the
    same text the chain would render, for a fraction of the calls.
    """

    def __init__(self, format: Format, colors: bool) -> None:
        self._clock = _Clock(short=format == "rich")
        super().__init__(
            foreign_pre_chain=[_add_record_extras],
            processors=[*_shared_processors(self._clock), *_renderer(format, colors)],
        )
        self._direct: Callable[[logging.LogRecord], str | None] | None = None
        if format == "plain":
            self._direct = self._plain_line
        elif format == "json":
            self._direct = self._json_line
        # levelname -> (the `level` field, the plain line's level), as the chain has them.
        self._levels: dict[str, tuple[str, str]] = {}
        self._run_levels: dict[int, tuple[str, str]] = {}  # the same by level number
        self._plain = format == "plain"

    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "_logger"):  # an event from a structlog logger
            return super().format(record)
        if (
            self._direct is not None
            and not record.exc_info
            and not record.stack_info
            and not _structlog_context_bound()
        ):
            line = self._direct(record)
            if line is not None:
                return line
        return self._through_chain(record)

    def _level(self, levelname: str) -> tuple[str, str]:
        level = self._levels.get(levelname)
        if level is None:
            key = structlog.stdlib.add_log_level(None, levelname.lower(), {})["level"]
            level = self._levels[levelname] = (key, str(key).upper())
        return level

    def _plain_line(self, record: logging.LogRecord) -> str | None:
        """`_render_plain`'s line for a record without traceback or bound context
        (None: one for the chain)."""
        line = (
            f"{self._clock.text(record.created)} {self._level(record.levelname)[1]} "
            f"{record.name}: {record.getMessage()}"
        )
        attributes = record.__dict__
        if _QUIET.issuperset(attributes):  # the usual case, checked without a new set
            return line
        extras = _extras(attributes)
        if extras is None:
            return None
        shown = [key for key in extras if key not in _CONTEXT_FIELDS]
        if not shown:
            return line
        pairs = " ".join(f"{key}={attributes[key]!r}" for key in shown)
        return f"{line} {pairs}"

    def _json_line(self, record: logging.LogRecord) -> str | None:
        """The chain's JSON object (same fields, same order) for such a record."""
        attributes = record.__dict__
        if _QUIET.issuperset(attributes):
            extras: Iterable[str] = filter(_CONTEXT_FIELDS.__contains__, attributes)
        else:
            found = _extras(attributes)
            if found is None:
                return None
            extras = found
        event_dict: EventDict = {"event": record.getMessage()}
        for key in extras:
            event_dict[key] = attributes[key]
        event_dict["level"] = self._level(record.levelname)[0]
        event_dict["logger"] = record.name
        event_dict["timestamp"] = self._clock.text(record.created)
        return _encode_json(_add_run_context(None, "", event_dict))

    def run_line(
        self,
        name: str,
        level: int,
        message: str,
        created: float,
        fields: Callable[[], Mapping[str, Any]],
    ) -> str | None:
        """The text `format` renders for a worker's run line (`_run_log`) that has
        no traceback, built without its record: None when this formatter needs
        the record (rich, or structlog context variables bound)."""
        if self._direct is None or _structlog_context_bound():
            return None
        levels = self._run_levels.get(level)
        if levels is None:
            levels = self._run_levels[level] = self._level(logging.getLevelName(level))
        if self._plain:
            return f"{self._clock.text(created)} {levels[1]} {name}: {message}"
        # As `_json_line`: the event, the record's context fields in its order,
        # then level, logger and timestamp (the run's context is already there).
        event_dict: EventDict = {"event": message, **fields()}
        event_dict["level"] = levels[0]
        event_dict["logger"] = name
        event_dict["timestamp"] = self._clock.text(created)
        return _encode_json(event_dict)

    def _through_chain(self, record: logging.LogRecord) -> str:
        event_dict: EventDict = {
            "event": record.getMessage(),
            "_record": record,
            "_from_structlog": False,
        }
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        if record.stack_info:
            event_dict["stack_info"] = record.stack_info
        method = record.levelname.lower()
        rendered: Any = event_dict
        for processor in self.foreign_pre_chain or ():
            rendered = processor(None, method, rendered)
        for processor in self.processors:
            rendered = processor(None, method, rendered)
        return cast(str, rendered)


def formatter(format: Format = "plain", colors: bool = False) -> logging.Formatter:
    """A stdlib formatter rendering records (stdlib's and structlog's) in `format`."""
    if format not in FORMATS:
        raise ValueError(f"unknown logging format {format!r}; expected one of {FORMATS}")
    return _Formatter(format, colors and format == "rich")


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs: writes every record, flushes once per loop turn.

    A flush is a system call, and a busy worker logs two lines per task. In a
    thread running an event loop the flush waits for the end of the current
    loop iteration (all of its lines in one write); elsewhere, and for
    warnings and errors, it happens at once.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        # The loop a flush is scheduled on, and its thread (a stopped loop's
        # never comes: a record on another loop schedules its own).
        self._flush_on: tuple[asyncio.AbstractEventLoop, int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            formatter = self.formatter  # directly: Handler.format is one call more
            line = self.format(record) if formatter is None else formatter.format(record)
            self.stream.write(line + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self._flush_for(record.levelno)

    def write_run_line(
        self,
        name: str,
        level: int,
        message: str,
        created: float,
        fields: Callable[[], Mapping[str, Any]],
    ) -> bool:
        """`_run_log.RunLineWriter`: a run line written without a LogRecord, as
        `emit` would write it (False: build the record instead)."""
        formatter = self.formatter
        if not isinstance(formatter, _Formatter):
            return False
        line = formatter.run_line(name, level, message, created, fields)
        if line is None:
            return False
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            try:
                self.stream.write(line + self.terminator)
                self._flush_for(level)
            except RecursionError:
                raise
            except Exception:
                return False  # the record's way reports it (handleError)
        return True

    def _flush_for(self, level: int) -> None:
        if level >= logging.WARNING:
            self.flush()
            return
        pending = self._flush_on
        thread = threading.get_ident()
        # Only one loop runs in a thread at a time: if the pending flush's loop
        # is running in this one, this record is on it and its flush is due.
        # (Asking asyncio for the running loop costs a getpid() system call
        # per record on CPython 3.11.)
        if pending is not None and pending[1] == thread and pending[0].is_running():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if pending is None or pending[0] is not loop:
            self._flush_on = (loop, thread)
            loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_on = None
        self.flush()


def configure(
    format: Format | None = None,
    level: int | str = "INFO",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send log records to `stream` (default stdout, as docket) in `format`.

    Without a format: `rich` on a TTY, `plain` otherwise. Sets the root
    logger's level; calling again replaces what an earlier call installed.
    Returns the handler.
    """
    output: TextIO = stream if stream is not None else sys.stdout
    tty = _isatty(output)
    chosen: Format = format if format is not None else ("rich" if tty else "plain")
    handler = _Handler(output)
    handler.setFormatter(formatter(chosen, colors=tty))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # structlog's own loggers (an application's) hand their events to the
    # stdlib too, and so reach this handler and any other.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def _isatty(stream: TextIO) -> bool:
    isatty = cast(Callable[[], bool] | None, getattr(stream, "isatty", None))
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def get_logger(name: str) -> Any:
    """A structlog logger named `docket_nats.<name>` that logs through the stdlib."""
    return structlog.stdlib.get_logger(f"docket_nats.{name}")
