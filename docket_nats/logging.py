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
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO, cast, get_args

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .dependencies.base import current_execution, current_worker
from .runlog import task_fields

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
    worker = current_worker.get(None)
    for key, value in task_fields(execution, worker.name if worker else None).items():
        event_dict.setdefault(key, value)
    return event_dict


def _drop_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in _CONTEXT_FIELDS.intersection(event_dict):
        del event_dict[key]
    return event_dict


def _timestamper(short: bool) -> Processor:
    """The record's own time (when it was logged, not rendered), UTC for machines.

    The whole-second part is formatted once per second: a busy worker logs
    thousands of lines in each.
    """
    # (second, its text), replaced as one object: threads may log at once.
    cached: list[tuple[int, str]] = [(-1, "")]

    def add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        record: logging.LogRecord | None = event_dict.get("_record")
        created = record.created if record is not None else time.time()
        second = int(created)
        state = cached[0]
        if state[0] != second:
            if short:
                state = (second, time.strftime("%H:%M:%S", time.localtime(second)))
            else:
                state = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            cached[0] = state
        millis = int((created - second) * 1000)
        suffix = "" if short else "Z"
        event_dict["timestamp"] = f"{state[1]}.{millis:03d}{suffix}"
        return event_dict

    return add_timestamp


def _shared_processors(short_time: bool) -> list[Processor]:
    """What both stdlib records and structlog events go through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamper(short_time),
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


class _Formatter(structlog.stdlib.ProcessorFormatter):
    """structlog's ProcessorFormatter, with a shorter path for stdlib records.

    The stock one copies each record and runs the stdlib formatting over the
    rendered line; a standard-library record needs neither (this path leaves
    the record untouched), and the worker logs two of them per task.
    """

    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "_logger"):  # an event from a structlog logger
            return super().format(record)
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
    return _Formatter(
        foreign_pre_chain=[_add_record_extras],
        processors=[
            *_shared_processors(short_time=format == "rich"),
            *_renderer(format, colors and format == "rich"),
        ],
    )


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs: writes every record, flushes once per loop turn.

    A flush is a system call, and a busy worker logs two lines per task. In a
    thread running an event loop the flush waits for the end of the current
    loop iteration (all of its lines in one write); elsewhere, and for
    warnings and errors, it happens at once.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        # The loop a flush is scheduled on (a stopped loop's never comes: a
        # record on another loop schedules its own).
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            self.flush()
        elif self._flush_on is not loop:
            self._flush_on = loop
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
