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
so a worker at WARNING pays one level check per line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .annotations import call_repr
from .dependencies.base import current_worker, format_duration

if TYPE_CHECKING:
    from .dependencies.base import TaskOutcome
    from .execution import Execution

logger = logging.getLogger("docket_nats.worker")

# Outcome -> (the line's mark, its level). Other outcome names log at INFO with "↩".
OUTCOMES: dict[str, tuple[str, int]] = {
    "success": ("↩", logging.INFO),
    "failed": ("↩", logging.ERROR),
    "cancelled": ("✗", logging.INFO),
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
        worker = current_worker.get(None)
        worker_name = worker.name if worker is not None else None
    if worker_name is not None:
        fields["docket.worker"] = worker_name
    return fields


# The call text and context of the run this asyncio task is running: worked out
# for its start line, reused for its finish line (each run is its own task).
_this_run: ContextVar[tuple[Execution, str, dict[str, Any]]] = ContextVar("docket_nats_run_line")


def _run_line(execution: Execution, worker_name: str | None) -> tuple[str, dict[str, Any]]:
    cached = _this_run.get(None)
    if cached is not None and cached[0] is execution:
        return cached[1], cached[2]
    call, fields = call_repr(execution), task_fields(execution, worker_name)
    _this_run.set((execution, call, fields))
    return call, fields


def _emit(
    level: int,
    message: str,
    args: tuple[Any, ...],
    fields: dict[str, Any],
    exc_info: BaseException | None = None,
) -> None:
    error = None if exc_info is None else (type(exc_info), exc_info, exc_info.__traceback__)
    if logging.getLogRecordFactory() is logging.LogRecord:
        record = _new_record(level, message, args, error)
        record.__dict__.update(fields)
    else:  # an application's record factory (e.g. tracing ids) gets its say
        record = logger.makeRecord(
            logger.name, level, __file__, 0, message, args, error, None, fields
        )
    logger.handle(record)


# A LogRecord re-derives on each call what is constant for these lines (source
# file and module, process, thread): two records per task make that a large
# share of a busy worker's logging cost. So each thread keeps a template made
# by LogRecord itself (all the attributes of this Python's records) and new
# records copy it, setting only what differs: message, level, time, task.
_templates: dict[int, dict[str, Any]] = {}
if hasattr(os, "register_at_fork"):  # POSIX: a forked child has its own process id
    os.register_at_fork(after_in_child=_templates.clear)


def _new_record(
    level: int, message: str, args: tuple[Any, ...], exc_info: Any
) -> logging.LogRecord:
    where = threading.get_ident()
    template = _templates.get(where)
    if template is None:
        made = logging.LogRecord(logger.name, logging.INFO, __file__, 0, "", (), None, "run")
        template = _templates[where] = made.__dict__
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(template)
    now = time.time()
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
    attributes["relativeCreated"] = template["relativeCreated"] + (now - template["created"]) * 1000
    attributes["msg"] = message
    attributes["args"] = args
    attributes["levelno"] = level
    attributes["levelname"] = logging.getLevelName(level)
    attributes["exc_info"] = exc_info
    attributes["threadName"] = threading.current_thread().name  # thread ids are reused
    if "taskName" in attributes:  # Python 3.12+: the asyncio task that logged
        task = _current_task()
        attributes["taskName"] = task.get_name() if task is not None else None
    return record


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def log_start(execution: Execution, worker_name: str | None = None) -> None:
    """`↪ [punctuality] call`: the run begins (`↬` for a retry's attempt)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    punctuality = time.time() - execution.when.timestamp()
    call, context = _run_line(execution, worker_name)
    fields = {**context, "punctuality": punctuality}
    mark = "↬" if execution.attempt > 1 else "↪"
    _emit(logging.INFO, "%s [%s] %s", (mark, format_duration(max(punctuality, 0.0)), call), fields)


def log_finish(execution: Execution, outcome: TaskOutcome, worker_name: str | None = None) -> None:
    """The run ended on its own: success, or failure with its traceback."""
    if outcome.exception is None:
        log_outcome(execution, "success", outcome.duration, worker_name=worker_name)
    else:
        log_outcome(
            execution,
            "failed",
            outcome.duration,
            worker_name=worker_name,
            exc_info=outcome.exception,
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
    mark, usual_level = OUTCOMES.get(outcome, ("↩", logging.INFO))
    level = usual_level if level is None else level
    if not logger.isEnabledFor(level):
        return
    call, context = _run_line(execution, worker_name)
    fields = {**context, "outcome": outcome}
    if outcome == "success":
        suffix = ""
    else:
        suffix = f" ({outcome}: {detail})" if detail else f" ({outcome})"
    if duration is None:
        _emit(level, "%s %s%s", (mark, call, suffix), fields, exc_info)
        return
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    fields["duration"] = seconds
    _emit(level, "%s [%s] %s%s", (mark, format_duration(seconds), call, suffix), fields, exc_info)
