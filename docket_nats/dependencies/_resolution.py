"""Resolving a task's dependencies for one run, and docket's helpers around it.

`resolve` enters the worker's and the task's dependencies on the run's exit
stack (uncalled-for's, in its context variable) inside an uncalled-for frame,
so `CallArgument`/`TaskArgument` see the run's arguments and every parameter
resolves once. Failures are collected, not raised: the caller reports them all
together. A flow-control refusal (`AdmissionBlocked`) stops resolution at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from uncalled_for import Frame, frame_scope

from ._admission import AdmissionBlocked
from ._base import Dependency, run_stack
from ._contextual import _TaskArgument  # pyright: ignore[reportPrivateUsage]
from ._plans import Plan, plan_for

if TYPE_CHECKING:
    from ..execution import Execution, TaskFunction

D = TypeVar("D", bound=Dependency[Any])


class Resolution:
    """What resolving one run's dependencies gave."""

    __slots__ = ("arguments", "failures", "values", "worker_values")

    def __init__(self) -> None:
        # The task's keyword arguments: the caller's, plus each dependency's value.
        self.arguments: dict[str, Any] = {}
        # Every value that stands for a dependency (the handlers are found here):
        # the worker's, the task's, and any the caller passed for a dependency.
        self.values: list[Any] = []
        self.worker_values: dict[str, Any] = {}
        # Where resolution failed, by parameter (or worker dependency) name.
        self.failures: dict[str, Exception] = {}


async def resolve(
    execution: Execution, plan: Plan, worker_dependencies: Mapping[str, Dependency[Any]]
) -> Resolution:
    """Enter the run's dependencies (see the module docstring)."""
    resolution = Resolution()
    failures = resolution.failures
    stack = run_stack()
    for name, dependency in worker_dependencies.items():
        try:
            value = await stack.enter_async_context(dependency)
        except AdmissionBlocked:
            raise
        except Exception as error:
            failures[name] = error
            continue
        resolution.worker_values[name] = value
        resolution.values.append(value)
    kwargs = resolution.arguments
    kwargs.update(execution.kwargs)
    provided = plan.bind(execution.args, kwargs)
    with frame_scope(execution.function, provided) as frame:
        for name, dependency in plan.parameters.items():
            if name in kwargs:
                resolution.values.append(kwargs[name])  # passed explicitly: used as given
                continue
            if name in provided:
                continue  # passed positionally: it reaches the task through args
            if isinstance(dependency, _TaskArgument) and dependency.parameter is None:
                failures[name] = ValueError(
                    "a task's own parameter cannot default to a bare TaskArgument(); "
                    "name the argument: TaskArgument('name')"
                )
                continue
            try:
                value = await _resolve_parameter(frame, name, dependency)
            except AdmissionBlocked:
                raise
            except Exception as error:
                failures[name] = error
                continue
            kwargs[name] = value
            resolution.values.append(value)
        for name, wrappers in plan.annotations.items():
            argument = kwargs[name] if name in kwargs else provided.get(name)
            for wrapper in wrappers:
                try:
                    await stack.enter_async_context(wrapper.bind_to_parameter(name, argument))
                except AdmissionBlocked:
                    raise
                except Exception as error:
                    failures[name] = error
    if worker_dependencies:
        failures.update(plan.conflicts_with(worker_dependencies))
    return resolution


# The base class's no-op exit: a dependency that keeps it has nothing to undo.
_NOTHING_TO_EXIT: object = getattr(Dependency, "__aexit__")  # noqa: B009 (typed as object)


async def _resolve_parameter(frame: Frame, name: str, dependency: Dependency[Any]) -> Any:
    """The value of a task parameter, through the run's uncalled-for frame.

    The frame memoizes each parameter (a CallArgument naming a sibling shares
    its value) and detects cycles. Most dependencies only produce a value
    (CurrentDocket, TaskKey, Retry, ...): those skip the exit stack, which is
    most of the per-run cost, and are recorded in the frame as `resolve` does.
    """
    if (
        type(dependency).__aexit__ is not _NOTHING_TO_EXIT
        or name in frame.resolved
        or name in frame.failures
    ):
        return await frame.resolve(name)
    frame.resolving.append(name)
    try:
        value = await dependency.for_parameter(name).__aenter__()
    except Exception as error:
        frame.failures[name] = error
        raise
    finally:
        frame.resolving.pop()
    frame.resolved[name] = value
    return value


def get_single_dependency_of_type(
    dependencies: Mapping[str, Any], dependency_type: type[D]
) -> D | None:
    """The first of `dependencies` (a run's values) that is a `dependency_type`."""
    for dependency in dependencies.values():
        if isinstance(dependency, dependency_type):
            return dependency
    return None


def get_single_dependency_parameter_of_type(
    function: TaskFunction, dependency_type: type[D]
) -> D | None:
    """The `dependency_type` a function declares (default or `Annotated`), if any."""
    for _, dependency in plan_for(function).declared():
        if isinstance(dependency, dependency_type):
            return dependency
    return None
