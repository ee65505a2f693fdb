"""TaskLogger: a logger for the running task that carries the run's context."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from ._base import Provider, current_execution, current_worker_context


class TaskLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A LoggerAdapter whose records carry the run's context and the caller's `extra`.

    The stdlib adapter (before Python 3.13's `merge_extra`) replaces a call's
    `extra` with its own; here both reach the record, the caller's winning on a
    clash.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        context: Mapping[str, object] = self.extra or {}
        extra = kwargs.get("extra")
        kwargs["extra"] = {**context, **extra} if extra else context
        return msg, kwargs


class _TaskLogger(Provider["logging.LoggerAdapter[logging.Logger]"]):
    async def __aenter__(self) -> logging.LoggerAdapter[logging.Logger]:
        from .._run_log import task_fields  # runlog imports the dependencies package

        execution = current_execution.get()
        worker = current_worker_context.get(None)
        return TaskLoggerAdapter(
            logging.getLogger(f"docket_nats.task.{execution.function_name}"),
            task_fields(execution, worker.name if worker is not None else None),
        )


def TaskLogger() -> logging.LoggerAdapter[logging.Logger]:
    """A logger for the running task: `logger: LoggerAdapter[Logger] = TaskLogger()`.

    Its records (logger `docket_nats.task.<task name>`) carry `docket.task`,
    `docket.key`, `docket.attempt`, `docket.when`, `docket.worker` and
    `docket.name`, plus whatever `extra` a call passes.
    """
    return cast("logging.LoggerAdapter[logging.Logger]", _TaskLogger())
