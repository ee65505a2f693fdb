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

import logging
import time
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


def log_start(execution: Execution, worker_name: str | None = None) -> None:
    """`↪ [punctuality] call`: the run begins (`↬` for a retry's attempt)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    punctuality = time.time() - execution.when.timestamp()
    fields = task_fields(execution, worker_name)
    fields["punctuality"] = punctuality
    logger.info(
        "%s [%s] %s",
        "↬" if execution.attempt > 1 else "↪",
        format_duration(max(punctuality, 0.0)),
        call_repr(execution),
        extra=fields,
    )


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
    fields = task_fields(execution, worker_name)
    fields["outcome"] = outcome
    suffix = "" if outcome == "success" else f" ({outcome}: {detail})" if detail else f" ({outcome})"
    if duration is None:
        logger.log(level, "%s %s%s", mark, call_repr(execution), suffix, extra=fields, exc_info=exc_info)
        return
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    fields["duration"] = seconds
    logger.log(
        level,
        "%s [%s] %s%s",
        mark,
        format_duration(seconds),
        call_repr(execution),
        suffix,
        extra=fields,
        exc_info=exc_info,
    )
