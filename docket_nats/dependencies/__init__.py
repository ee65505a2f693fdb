"""What a task can ask for by default value or `Annotated[...]`, and task behaviors.

The injection itself is uncalled-for's, the library docket builds on:
`Dependency`, `Depends`, `Shared`, `CallArgument`, frames, per-run caching and
validation. One module per concern: `base` (handler kinds, context variables),
`contextual` (CurrentDocket, TaskKey, TaskArgument, ...), `functional`
(Depends), `shared` (Shared per worker), `plans` (what a function declares,
cached), `running` (one run: resolve, call, tear down, outcome hooks),
`lifecycle` (the classes' worker_lifecycle hooks), and the behaviors
`perpetual`, `cron`, `retry`, `timeout`, ...
"""

from uncalled_for import (
    CallArgument,
    CycleError,
    FailedDependency,
    get_annotation_dependencies,
    get_dependency_parameters,
    validate_dependencies,
)

from ._admission import AdmissionBlocked
from ._base import (
    CompletionHandler,
    Dependency,
    FailureHandler,
    Runtime,
    TaskOutcome,
    current_docket,
    current_execution,
    current_worker,
    format_duration,
)
from ._concurrency import ConcurrencyBlocked, ConcurrencyLimit
from ._contextual import CurrentDocket, CurrentExecution, CurrentWorker, TaskArgument, TaskKey
from ._cooldown import Cooldown
from ._cron import Cron
from ._debounce import Debounce
from ._functional import DependencyFunction, Depends
from ._logger import TaskLogger
from ._perpetual import Perpetual
from ._plans import plan_for
from ._ratelimit import RateLimit
from ._resolution import (
    get_single_dependency_of_type,
    get_single_dependency_parameter_of_type,
    resolved_dependencies,
)
from ._retry import ExponentialRetry, ForcedRetry, Retry
from ._running import DependencyError, run_task
from ._shared import Shared, SharedContext
from ._timeout import Timeout

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
