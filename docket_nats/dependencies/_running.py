"""One task run with its dependencies: resolve, call, tear down, outcome hooks.

The worker calls `run_task` once per run, in the asyncio task that runs it, so
the context variables it sets (the run's execution, uncalled-for's per-run
cache, exit stack and frame, the worker's shared values) are that run's alone;
the worker has set the docket and worker ones for all its runs. Sync task
functions run in the worker's thread pool, with the run's context variables.
A function without dependencies (and a worker without any) is called
straight away: the plan lookup is the only extra cost.
Otherwise, as docket does:

1. the worker's and the task's dependencies are entered (each failure is
   collected, so a Retry still resolves when another dependency fails, and
   they are reported together: `Failed to resolve dependencies for
   parameter(s): a, b`, each error in the group);
2. the task is called, through a `Runtime` dependency (Timeout) if it has one;
3. every dependency is exited, latest first, with the task's exception if any;
4. a `FailureHandler` (Retry) may take a failure over; otherwise a
   `CompletionHandler` (Perpetual, Cron) acts on the outcome.

A run a flow-control dependency refuses (`AdmissionBlocked`) never calls the
task and counts as handled: the worker settles it (reschedule or drop).

A value the caller passes for a dependency parameter is used as given, and
counts as that dependency (a `Retry` passed in handles the failures).

Errors of the outcome hooks themselves (a reschedule that could not be
published) propagate: the worker then hands the message back instead of acking
it, so a crash or an outage means a redelivery, never a lost chain.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Mapping
from concurrent.futures import Executor as ThreadPool
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from uncalled_for.functional import _Depends  # pyright: ignore[reportPrivateUsage]

from ._admission import AdmissionBlocked
from ._base import (
    CompletionHandler,
    Dependency,
    FailureHandler,
    Runtime,
    TaskOutcome,
    current_execution,
)
from ._plans import plan_for
from ._resolution import resolve
from ._shared import WorkerShared

if TYPE_CHECKING:
    from ..execution import Execution, TaskFunction


class DependencyError(ExceptionGroup[Exception]):
    """Some of a task's dependencies could not be resolved.

    The message is docket's (`Failed to resolve dependencies for parameter(s):
    a, b`), the errors are the group's. Its text also names each error: a
    stored result keeps only the text when the group cannot be pickled, and the
    cause must survive there.
    """

    def __str__(self) -> str:
        causes = "; ".join(f"{type(error).__name__}: {error}" for error in self.exceptions)
        return f"{self.message} ({causes})"


async def run_task(
    execution: Execution,
    threads: ThreadPool,
    worker_dependencies: Mapping[str, Dependency[Any]],
    shared: WorkerShared | None,
) -> tuple[TaskOutcome, bool]:
    """Run one execution; returns its outcome and whether a handler took it over.

    A handler that returns True (a retry was scheduled, the perpetual was
    rescheduled) has logged the outcome itself.
    """
    current_execution.set(execution)
    function = execution.function
    plan = plan_for(function)
    started = time.perf_counter()
    if plan.trivial and not worker_dependencies:
        try:
            value = await _invoke(function, execution.args, execution.kwargs, threads)
        except Exception as error:
            return _outcome(started, exception=error), False
        return _outcome(started, result=value), False

    if shared is not None:
        shared.activate()
    stack = AsyncExitStack()
    _Depends.stack.set(stack)
    _Depends.cache.set({})
    resolved: list[Any] = []
    result: Any = None
    exception: Exception | None = None
    try:
        resolution = await resolve(execution, plan, worker_dependencies)
        resolved = resolution.values
        if resolution.failures:
            failures = resolution.failures
            raise DependencyError(
                "Failed to resolve dependencies for parameter(s): " + ", ".join(failures),
                list(failures.values()),
            )
        kwargs = resolution.arguments
        runtime: Runtime[Any] | None = _first(resolved, Runtime)
        if runtime is not None:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await _invoke(function, args, kwargs, threads)

            result = await runtime.run(execution, call, execution.args, kwargs)
        else:
            result = await _invoke(function, execution.args, kwargs, threads)
    except Exception as error:
        exception = error
    except BaseException as error:  # cancelled: tear down, then let it through
        await _tear_down(stack, error)
        raise
    outcome = _outcome(started, result=result, exception=exception)
    teardown_error = await _tear_down(stack, exception)
    if isinstance(exception, AdmissionBlocked):
        # A flow-control dependency refused the run: the worker reschedules or
        # drops it; never a failure (no Retry, no Perpetual follow-up).
        return outcome, True
    if outcome.exception is None and teardown_error is not None:
        outcome.exception = teardown_error
    return outcome, await _handle(execution, outcome, resolved)


async def _invoke(
    function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any], threads: ThreadPool
) -> Any:
    if inspect.iscoroutinefunction(function):
        return await function(*args, **kwargs)
    # Sync tasks run in the worker's threads, with this run's context variables.
    context = contextvars.copy_context()
    result = await asyncio.get_running_loop().run_in_executor(
        threads, partial(context.run, function, *args, **kwargs)
    )
    if inspect.isawaitable(result):
        return await result
    return result


def _outcome(
    started: float, result: Any = None, exception: BaseException | None = None
) -> TaskOutcome:
    return TaskOutcome(timedelta(seconds=time.perf_counter() - started), result, exception)


async def _tear_down(stack: AsyncExitStack, exception: BaseException | None) -> Exception | None:
    """Exit the run's dependencies, latest first; an error of their own is returned."""
    try:
        if exception is None:
            await stack.aclose()
        else:
            await stack.__aexit__(type(exception), exception, exception.__traceback__)
    except Exception as error:
        if error is not exception:
            return error
    return None


async def _handle(execution: Execution, outcome: TaskOutcome, resolved: list[Any]) -> bool:
    if outcome.exception is not None:
        failure_handler: FailureHandler[Any] | None = _first(resolved, FailureHandler)
        if failure_handler is not None and await failure_handler.handle_failure(execution, outcome):
            return True
    completion_handler: CompletionHandler[Any] | None = _first(resolved, CompletionHandler)
    return completion_handler is not None and await completion_handler.on_complete(
        execution, outcome
    )


def _first(values: list[Any], kind: type[Any]) -> Any:
    """The first resolved value of a kind (the kinds are abstract: no type[H] here)."""
    for value in values:
        value_type: type[Any] = value.__class__
        if _is_kind(value_type, kind):
            return value
    return None


_kinds: dict[tuple[type, type], bool] = {}


def _is_kind(cls: type, kind: type) -> bool:
    # Runtime & co. are ABCs, whose isinstance is slow; a run asks per value.
    known = _kinds.get((cls, kind))
    if known is None:
        known = _kinds[(cls, kind)] = issubclass(cls, kind)
    return known
