"""What a task can ask for by default value or `Annotated[...]`, and task behaviors.

The injection itself is uncalled-for's, the library docket builds on:
`Dependency`, `Depends`, `Shared`, `CallArgument`, frames, per-run caching and
validation. One module per concern: `_base` (handler kinds, context variables),
`_contextual` (CurrentDocket, TaskKey, TaskArgument, ...), `_functional`
(Depends), `_shared` (Shared per worker), `_plans` (what a function declares,
cached), `_resolution` and `_running` (one run: resolve, call, tear down,
outcome hooks), and the behaviors `_perpetual`, `_cron`, `_retry`, `_timeout`, ...

`CurrentWorker`, `current_worker` and `resolved_dependencies` name the Worker,
which sits above this package (it runs what is declared here): they are the
worker's own, and this module hands them out on first use so that importing a
dependency never imports the worker.
"""

from typing import TYPE_CHECKING, Any

from uncalled_for import (
    CallArgument,
    CycleError,
    FailedDependency,
    get_annotation_dependencies,
    get_dependency_parameters,
    validate_dependencies,
)

from .._priority import Priority
from ._admission import AdmissionBlocked
from ._base import (
    CompletionHandler,
    Dependency,
    FailureHandler,
    Runtime,
    TaskOutcome,
    current_docket,
    current_execution,
    current_worker_context,
    format_duration,
)
from ._concurrency import ConcurrencyBlocked, ConcurrencyLimit
from ._contextual import CurrentDocket, CurrentExecution, TaskArgument, TaskKey
from ._cooldown import Cooldown
from ._cron import Cron
from ._debounce import Debounce
from ._functional import DependencyFunction, Depends
from ._logger import TaskLogger
from ._perpetual import Perpetual
from ._plans import plan_for
from ._ratelimit import RateLimit
from ._resolution import get_single_dependency_of_type, get_single_dependency_parameter_of_type
from ._retry import ExponentialRetry, ForcedRetry, Retry
from ._running import DependencyError, run_task
from ._shared import Shared, SharedContext
from ._timeout import Timeout

if TYPE_CHECKING:
    from ..worker._resolved_dependencies import resolved_dependencies
    from ..worker._worker import CurrentWorker, current_worker

_FROM_THE_WORKER = {
    "CurrentWorker": "_worker",
    "current_worker": "_worker",
    "resolved_dependencies": "_resolved_dependencies",
}


def __getattr__(name: str) -> Any:
    module = _FROM_THE_WORKER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"docket_nats.worker.{module}"), name)


__all__ = [
    "AdmissionBlocked",
    "CallArgument",
    "CompletionHandler",
    "ConcurrencyBlocked",
    "ConcurrencyLimit",
    "Cooldown",
    "Cron",
    "CurrentDocket",
    "CurrentExecution",
    "CurrentWorker",
    "CycleError",
    "Debounce",
    "Dependency",
    "DependencyError",
    "DependencyFunction",
    "Depends",
    "ExponentialRetry",
    "FailedDependency",
    "FailureHandler",
    "ForcedRetry",
    "Perpetual",
    "Priority",
    "RateLimit",
    "Retry",
    "Runtime",
    "Shared",
    "SharedContext",
    "TaskArgument",
    "TaskKey",
    "TaskLogger",
    "TaskOutcome",
    "Timeout",
    "current_docket",
    "current_execution",
    "current_worker",
    "current_worker_context",
    "format_duration",
    "get_annotation_dependencies",
    "get_dependency_parameters",
    "get_single_dependency_of_type",
    "get_single_dependency_parameter_of_type",
    "plan_for",
    "resolved_dependencies",
    "run_task",
    "validate_dependencies",
]
