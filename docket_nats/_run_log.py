"""The worker's log lines for each run: start, finish and other outcomes.

    ↪ [2ms] process_payment('12345', credit_card=...){key}        started (↬ for a retry)
    ↩ [150ms] process_payment('12345', credit_card=...){key}      succeeded
    ↩ [150ms] process_payment(...){key} (failed)                  ERROR, with the traceback
    ↫ [150ms] process_payment(...){key} (retry scheduled: ...)     from a Retry
    ✗ [3s] process_payment(...){key} (cancelled)
    🗙 process_payment(...){key} (struck)

The bracket is the punctuality on start (how late it began) and the duration
otherwise; the call shows only `Logged` arguments (see `annotations`). Every
line carries the run's context as record attributes with docket's names
(`docket.task`, `docket.key`, `docket.attempt`, `docket.worker`,
`docket.name`, `docket.when`) plus `punctuality`, `duration` and `outcome`:
structured output (JSON) shows them as fields, and stdlib handlers can filter
on them.

Nothing is built when the worker's logger is not enabled for the line's level,
so a worker at WARNING pays one level check per line. And no LogRecord is built
when nobody would see one: if the only handler a line would reach is the one
`_log_setup.configure` installs (the CLI's; no caplog, no other handler, no
filter, the stock record factory), that handler writes the line's text directly
(`RunLineWriter`), the same text its formatter renders from the record. Any
other handler gets the full record, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from .annotations import call_repr
from .dependencies._base import current_worker_context, format_duration

if TYPE_CHECKING:
    from .dependencies._base import TaskOutcome
    from .execution import Execution

logger = logging.getLogger("docket_nats.worker")

# Outcome -> (the line's mark, its level). Other outcome names log at INFO with "↩".
OUTCOMES: dict[str, tuple[str, int]] = {
    "success": ("↩", logging.INFO),
    "failed": ("↩", logging.ERROR),
    "cancelled": ("✗", logging.INFO),
    "fenced": ("✗", logging.WARNING),
    "struck": ("🗙", logging.WARNING),
    "superseded": ("↬", logging.INFO),
    "retry scheduled": ("↫", logging.INFO),
    "perpetual rescheduled": ("↫", logging.INFO),
    "timed out": ("⏱", logging.WARNING),
}


def task_fields(execution: Execution, worker_name: str | None = None) -> dict[str, Any]:
    """A run's context under docket's label names (the worker's, if known)."""
    fields: dict[str, Any] = {
        "docket.name": execution.docket.name,
        "docket.task": execution.function_name,
        "docket.key": execution.key,
        "docket.when": execution.when.isoformat(),
        "docket.attempt": execution.attempt,
    }
    if worker_name is None:
        worker = current_worker_context.get(None)
        worker_name = worker.name if worker is not None else None
    if worker_name is not None:
        fields["docket.worker"] = worker_name
    return fields


class _Run:
    """What a run's lines share, worked out for its start line and reused for the
    others: the call text and, when a line needs them, the context and the
    attributes every record of it starts from (this thread's template plus the
    context)."""

    __slots__ = ("_attributes", "_context", "call", "execution", "thread", "worker_name")

    def __init__(self, execution: Execution, worker_name: str | None, thread: int) -> None:
        self.execution = execution
        self.thread = thread
        self.call = call_repr(execution)
        if worker_name is None:  # now: the line may be written from elsewhere
            worker = current_worker_context.get(None)
            worker_name = worker.name if worker is not None else None
        self.worker_name = worker_name
        self._context: dict[str, Any] | None = None
        self._attributes: dict[str, Any] | None = None

    @property
    def context(self) -> dict[str, Any]:
        context = self._context
        if context is None:
            context = self._context = task_fields(self.execution, self.worker_name)
        return context

    @property
    def attributes(self) -> dict[str, Any]:
        attributes = self._attributes
        if attributes is None:
            template = _templates.get(self.thread)
            if template is None:
                made = logging.LogRecord(
                    logger.name, logging.INFO, __file__, 0, "", (), None, "run"
                )
                template = _templates[self.thread] = made.__dict__
            attributes = self._attributes = {**template, **self.context}
        return attributes


class RunLineWriter(Protocol):
    """A handler that can write a run line without a LogRecord (`_log_setup`'s).

    `fields()` gives what the record would carry beyond the stdlib's (asked
    only by a format that shows them): the run's context, then the line's own
    (`punctuality`, or `outcome` and `duration`), in that order. False: it
    cannot (a formatter of another kind, structlog context bound, ...), and
    the line goes the record's way.
    """

    def write_run_line(
        self,
        name: str,
        level: int,
        message: str,
        created: float,
        fields: Callable[[], Mapping[str, Any]],
    ) -> bool: ...


def _direct_writer(level: int) -> RunLineWriter | None:
    """The one handler a line of `level` would reach, if it writes run lines
    directly; None when a record is needed (any other handler, a filter, an
    application's record factory or Logger class). What `Logger.handle` and
    `callHandlers` would do, minus building the record."""
    if (
        logger.filters
        or logger.disabled
        or not _stock_handle
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or level < found.level or found.filters:
        return None
    if not hasattr(found, "write_run_line"):
        return None
    return cast(RunLineWriter, found)


# The run this asyncio task is running (each run is its own task).
_this_run: ContextVar[_Run] = ContextVar("docket_nats_run_line")

# A LogRecord re-derives on each call what is constant for these lines (source
# file and module, process, thread): two records per task make that a large
# share of a busy worker's logging cost. So each thread keeps a template made
# by LogRecord itself (all the attributes of this Python's records) and a run's
# records copy it, setting only what differs: message, level, time, task.
_templates: dict[int, dict[str, Any]] = {}
if hasattr(os, "register_at_fork"):  # POSIX: a forked child has its own process id
    os.register_at_fork(after_in_child=_templates.clear)


def _run(execution: Execution, worker_name: str | None) -> _Run:
    run = _this_run.get(None)
    thread = threading.get_ident()
    if run is None or run.execution is not execution or run.thread != thread:
        run = _Run(execution, worker_name, thread)
        _this_run.set(run)
    return run


def _record(
    run: _Run,
    level: int,
    message: str,
    args: tuple[Any, ...],
    now: float,
    exc_info: BaseException | None = None,
) -> logging.LogRecord:
    """A record of `logger` with the run's context as attributes (more may follow)."""
    error = None if exc_info is None else (type(exc_info), exc_info, exc_info.__traceback__)
    if logging.getLogRecordFactory() is not logging.LogRecord:
        # An application's record factory (e.g. tracing ids) gets its say.
        return logger.makeRecord(
            logger.name, level, __file__, 0, message, args, error, None, run.context
        )
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__ = attributes = run.attributes.copy()  # a copy is quicker than an update
    # The template's relativeCreated is from its own creation time.
    attributes["relativeCreated"] += (now - attributes["created"]) * 1000
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
    attributes["msg"] = message
    attributes["args"] = args
    attributes["levelno"] = level
    attributes["levelname"] = logging.getLevelName(level)
    attributes["exc_info"] = error
    attributes["threadName"] = threading.current_thread().name  # thread ids are reused
    if "taskName" in attributes:  # Python 3.12+: the asyncio task that logged
        task = _current_task()
        attributes["taskName"] = task.get_name() if task is not None else None
    return record


# `Logger.handle` is "if not disabled and the logger's filters pass, callHandlers":
# with neither (the usual case) a record goes to callHandlers directly.
_stock_handle = type(logger).handle is logging.Logger.handle


def _handle(record: logging.LogRecord) -> None:
    if logger.filters or logger.disabled or not _stock_handle:
        logger.handle(record)
    else:
        logger.callHandlers(record)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def _took(seconds: float) -> str:
    """`format_duration(seconds)`; for the usual 0-100 s without float formatting,
    which a profile of a busy worker put at ~7% of its run lines' cost. round()
    and "%.0f" give the same integer: both round half to even on the exact value."""
    if 0.0 < seconds < 100.0:
        return f"{round(seconds * 1000):6d}ms"
    return format_duration(seconds)


def log_start(execution: Execution, worker_name: str | None = None) -> None:
    """`↪ [punctuality] call`: the run begins (`↬` for a retry's attempt)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    now = time.time()
    punctuality = now - execution.when.timestamp()
    run = _run(execution, worker_name)
    mark = "↬" if execution.attempt > 1 else "↪"
    late = _took(punctuality if punctuality > 0.0 else 0.0)
    writer = _direct_writer(logging.INFO)
    if writer is not None:
        text = f"{mark} [{late}] {run.call}"
        if writer.write_run_line(
            logger.name,
            logging.INFO,
            text,
            now,
            lambda: {**run.context, "punctuality": punctuality},
        ):
            return
    record = _record(run, logging.INFO, "%s [%s] %s", (mark, late, run.call), now)
    record.__dict__["punctuality"] = punctuality
    _handle(record)


def log_finish(execution: Execution, outcome: TaskOutcome, worker_name: str | None = None) -> None:
    """The run ended on its own: success, or failure with its traceback."""
    if outcome.exception is None:
        _log_outcome(execution, "success", outcome.duration, None, None, None, worker_name)
    else:
        _log_outcome(
            execution, "failed", outcome.duration, None, None, outcome.exception, worker_name
        )


def log_outcome(
    execution: Execution,
    outcome: str,
    duration: timedelta | float | None = None,
    *,
    detail: str | None = None,
    level: int | None = None,
    exc_info: BaseException | None = None,
    worker_name: str | None = None,
) -> None:
    """One line for how a run ended (see OUTCOMES), e.g. from a Retry:

        log_outcome(execution, "retry scheduled", outcome.duration, detail="in 1s, attempt 2 of 3")

    `duration` is how long the run took (none for a run that never started);
    `level` overrides the outcome's usual level; `exc_info` adds a traceback.
    """
    _log_outcome(execution, outcome, duration, detail, level, exc_info, worker_name)


def _log_outcome(
    execution: Execution,
    outcome: str,
    duration: timedelta | float | None,
    detail: str | None,
    level: int | None,
    exc_info: BaseException | None,
    worker_name: str | None,
) -> None:
    mark, usual_level = OUTCOMES.get(outcome, ("↩", logging.INFO))
    level = usual_level if level is None else level
    if not logger.isEnabledFor(level):
        return
    run = _run(execution, worker_name)
    if outcome == "success":
        suffix = ""
    else:
        suffix = f" ({outcome}: {detail})" if detail else f" ({outcome})"
    now = time.time()
    seconds: float | None = None
    if duration is not None:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    writer = _direct_writer(level) if exc_info is None else None
    if writer is not None:
        if seconds is None:
            text = f"{mark} {run.call}{suffix}"
        else:
            text = f"{mark} [{_took(seconds)}] {run.call}{suffix}"

        def fields() -> dict[str, Any]:
            if seconds is None:
                return {**run.context, "outcome": outcome}
            return {**run.context, "outcome": outcome, "duration": seconds}

        if writer.write_run_line(logger.name, level, text, now, fields):
            return
    if seconds is None:
        record = _record(run, level, "%s %s%s", (mark, run.call, suffix), now, exc_info)
        record.__dict__["outcome"] = outcome
    else:
        took = _took(seconds)
        record = _record(run, level, "%s [%s] %s%s", (mark, took, run.call, suffix), now, exc_info)
        attributes = record.__dict__
        attributes["outcome"] = outcome
        attributes["duration"] = seconds
    _handle(record)
