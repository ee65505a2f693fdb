"""One task run with its dependencies: resolve, call, tear down, outcome hooks.

The worker calls `run_task` once per run, in the asyncio task that runs it, so
the context variables it sets are that run's alone. A function without
dependencies (and a worker without any) is called straight away: the plan
lookup is the only extra cost. Otherwise:

1. the worker's and the task's dependencies are entered (each failure is
   collected, so a Retry still resolves when another dependency fails);
2. the task is called, through a `Runtime` dependency (Timeout) if it has one;
3. every dependency is exited, latest first, with the task's exception if any;
4. a `FailureHandler` (Retry) may take a failure over; otherwise a
   `CompletionHandler` (Perpetual, Cron) acts on the outcome.

Errors of the outcome hooks themselves (a reschedule that could not be
published) propagate: the worker then hands the message back instead of acking
it, so a crash or an outage means a redelivery, never a lost chain.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .admission import AdmissionBlocked, settle_blocked
from .base import (
    CompletionHandler,
    Dependency,
    FailureHandler,
    Runtime,
    TaskOutcome,
    current_docket,
    current_execution,
    current_worker,
)
from .contextual import _TaskArgument  # pyright: ignore[reportPrivateUsage]
from .plans import Plan, plan_for
from .scope import RunScope, enter_scope

if TYPE_CHECKING:
    from ..execution import Execution, TaskFunction
    from ..worker import Worker

Invoke = Callable[["TaskFunction", tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


class DependencyError(ExceptionGroup[Exception]):
    """Some of a task's dependencies could not be resolved; the message names them."""


async def run_task(
    execution: Execution, worker: Worker | None, invoke: Invoke
) -> tuple[TaskOutcome, bool]:
    """Run one execution; returns its outcome and whether a handler took it over.

    A handler that returns True (a retry was scheduled, the perpetual was
    rescheduled) has logged the outcome itself.
    """
    current_docket.set(execution.docket)
    current_execution.set(execution)
    worker_dependencies: Mapping[str, Any] = {}
    if worker is not None:
        current_worker.set(worker)
        worker_dependencies = worker.dependencies
    function = execution.function
    plan = plan_for(function)
    started = time.perf_counter()
    if plan.trivial and not worker_dependencies:
        try:
            value = await invoke(function, execution.args, execution.kwargs)
        except Exception as error:
            return _outcome(started, exception=error), False
        return _outcome(started, result=value), False

    scope = RunScope(execution, plan)
    enter_scope(scope)
    resolved: list[Any] = []
    result: Any = None
    exception: Exception | None = None
    try:
        kwargs = await _resolve(scope, worker_dependencies, resolved)
        runtime: Runtime | None = _first(resolved, Runtime)
        if runtime is not None:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await invoke(function, args, kwargs)

            result = await runtime.run(execution, call, execution.args, kwargs)
        else:
            result = await invoke(function, execution.args, kwargs)
    except Exception as error:
        exception = error
    except BaseException as error:  # cancelled: tear down, then let it through
        await _tear_down(scope, error)
        raise
    outcome = _outcome(started, result=result, exception=exception)
    teardown_error = await _tear_down(scope, exception)
    if isinstance(exception, AdmissionBlocked):
        # A flow-control dependency refused the run: rescheduled or dropped,
        # never a failure (no Retry, no Perpetual follow-up).
        await settle_blocked(exception, worker)
        return outcome, True
    if outcome.exception is None and teardown_error is not None:
        outcome.exception = teardown_error
    return outcome, await _handle(execution, outcome, resolved)


def _outcome(
    started: float, result: Any = None, exception: BaseException | None = None
) -> TaskOutcome:
    return TaskOutcome(timedelta(seconds=time.perf_counter() - started), result, exception)


async def _resolve(
    scope: RunScope, worker_dependencies: Mapping[str, Any], resolved: list[Any]
) -> dict[str, Any]:
    """The task's keyword arguments with its dependencies' values filled in."""
    execution, plan = scope.execution, scope.plan
    problem = plan.error or _worker_conflict(plan, worker_dependencies)
    if problem is not None:
        raise TypeError(f"{execution.function_name}(): {problem}")
    failures: dict[str, Exception] = {}
    for name, dependency in worker_dependencies.items():
        try:
            resolved.append(await scope.enter(dependency))
        except AdmissionBlocked:
            raise
        except Exception as error:
            failures[f"worker dependency {name!r}"] = error
    kwargs = dict(execution.kwargs)
    for name, dependency in plan.parameters.items():
        if plan.supplied(name, execution.args, execution.kwargs):
            continue  # the caller's argument wins over the declared dependency
        if isinstance(dependency, _TaskArgument) and dependency.parameter is None:
            failures[name] = ValueError(
                "a task's own parameter cannot default to a bare TaskArgument(); "
                "name the argument: TaskArgument('name')"
            )
            continue
        try:
            value = await scope.enter(dependency.for_parameter(name))
        except AdmissionBlocked:
            raise
        except Exception as error:
            failures[name] = error
            continue
        kwargs[name] = value
        resolved.append(value)
    for name, wrappers in plan.wrappers.items():
        argument = kwargs[name] if name in kwargs else scope.provided.get(name)
        for wrapper in wrappers:
            try:
                await scope.enter(wrapper.bind_to_parameter(name, argument))
            except AdmissionBlocked:
                raise
            except Exception as error:
                failures[name] = error
    if failures:
        raise DependencyError(
            f"{execution.function_name}() could not resolve its dependencies: "
            + "; ".join(
                f"{name}: {type(error).__name__}: {error}" for name, error in failures.items()
            ),
            list(failures.values()),
        )
    return kwargs


def _worker_conflict(plan: Plan, worker_dependencies: Mapping[str, Any]) -> str | None:
    if not worker_dependencies:
        return None
    for name, dependency in worker_dependencies.items():
        if not isinstance(dependency, Dependency):
            return (
                f"worker dependency {name!r} must be a Dependency (Depends(...), Retry(...), "
                f"...), not {type(dependency).__name__}"
            )
    return plan.conflicts_with(worker_dependencies)


async def _tear_down(scope: RunScope, exception: BaseException | None) -> Exception | None:
    """Exit the run's dependencies, latest first; an error of their own is returned."""
    try:
        if exception is None:
            await scope.stack.aclose()
        else:
            await scope.stack.__aexit__(type(exception), exception, exception.__traceback__)
    except Exception as error:
        if error is not exception:
            return error
    return None


async def _handle(execution: Execution, outcome: TaskOutcome, resolved: list[Any]) -> bool:
    if outcome.exception is not None:
        failure_handler: FailureHandler | None = _first(resolved, FailureHandler)
        if failure_handler is not None and await failure_handler.handle_failure(execution, outcome):
            return True
    completion_handler: CompletionHandler | None = _first(resolved, CompletionHandler)
    return completion_handler is not None and await completion_handler.on_complete(
        execution, outcome
    )


def _first(values: list[Any], kind: type[Any]) -> Any:
    """The first resolved value of a kind (the kinds are abstract: no type[H] here)."""
    for value in values:
        if isinstance(value, kind):
            return value
    return None
