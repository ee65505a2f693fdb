"""What `docket-nats worker` imports in the CLI parity tests (docket's
`module:member` paths): a task collection, a fallback task and worker-level
dependencies. The subprocess finds this module through PYTHONPATH=tests."""

from __future__ import annotations

from typing import Any

from docket_nats import CurrentExecution, CurrentWorker, Execution, Retry, Worker


async def double(number: int) -> int:
    return number * 2


async def settings(worker: Worker = CurrentWorker()) -> dict[str, Any]:
    """The worker's settings as the command line (or environment) gave them."""
    return {
        "name": worker.name,
        "concurrency": worker.concurrency,
        "redelivery_timeout": worker.redelivery_timeout.total_seconds(),
        "shutdown_grace": worker.shutdown_grace.total_seconds(),
        "message_batch": worker.message_batch,
        "reconnection_delay": worker.reconnection_delay.total_seconds(),
        "scheduling_resolution": worker.scheduling_resolution.total_seconds(),
        "schedule_automatic_tasks": worker.schedule_automatic_tasks,
        "enable_internal_instrumentation": worker.enable_internal_instrumentation,
    }


async def flaky(execution: Execution = CurrentExecution()) -> int:
    """Fails its first attempt: succeeds only under a Retry, here the worker's."""
    if execution.attempt == 1:
        raise RuntimeError("first attempt fails")
    return execution.attempt


tasks = [double, settings, flaky]


async def fallback(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


dependencies = [Retry(attempts=2)]
