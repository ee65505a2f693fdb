"""What a task can ask for by default value or `Annotated[...]`, and task behaviors.

One module per concern: `base` (Dependency, handler kinds, context variables),
`contextual` (CurrentDocket, TaskKey, TaskArgument, ...), `functional`
(Depends), `shared` (Shared), `plans` (what a function declares, cached), `scope` and `running`
(one run: resolve, call, tear down, outcome hooks), and the behaviors
`perpetual`, `cron`, `retry`, `timeout`.
"""

from .admission import AdmissionBlocked
from .base import (
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
from .concurrency import ConcurrencyBlocked, ConcurrencyLimit
from .contextual import CurrentDocket, CurrentExecution, CurrentWorker, TaskArgument, TaskKey
from .cooldown import Cooldown
from .cron import Cron
from .debounce import Debounce
from .functional import DependencyFunction, Depends
from .perpetual import Perpetual
from .plans import plan_for
from .ratelimit import RateLimit
from .retry import ExponentialRetry, ForcedRetry, Retry
from .running import DependencyError, run_task
from .shared import Shared
from .timeout import Timeout

__all__ = [
    "AdmissionBlocked",
    "CompletionHandler",
    "ConcurrencyBlocked",
    "ConcurrencyLimit",
    "Cooldown",
    "Cron",
    "CurrentDocket",
    "CurrentExecution",
    "CurrentWorker",
    "Debounce",
    "Dependency",
    "DependencyError",
    "DependencyFunction",
    "Depends",
    "ExponentialRetry",
    "FailureHandler",
    "ForcedRetry",
    "Perpetual",
    "RateLimit",
    "Retry",
    "Runtime",
    "Shared",
    "TaskArgument",
    "TaskKey",
    "TaskOutcome",
    "Timeout",
    "current_docket",
    "current_execution",
    "current_worker",
    "format_duration",
    "plan_for",
    "run_task",
]
