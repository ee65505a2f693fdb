"""docket-nats: docket's API for distributed background tasks, on NATS JetStream.

`from docket import ...` becomes `from docket_nats import ...`.
"""

from importlib.metadata import PackageNotFoundError, version

from . import docket as _docket_module
from . import tasks, testing
from ._execution_progress import ExecutionProgress
from ._groups import Group, GroupProgress, MemberOutcome
from ._priority import Priority
from ._queue_bound import QueueFull
from ._snapshot import DocketSnapshot, RunningExecution
from ._strike_list import StrikeList
from .agenda import Agenda
from .annotations import Logged
from .dependencies import (
    AdmissionBlocked,
    CallArgument,
    ConcurrencyLimit,
    Cooldown,
    Cron,
    CurrentDocket,
    CurrentExecution,
    CurrentWorker,
    CycleError,
    Debounce,
    Depends,
    ExponentialRetry,
    Perpetual,
    RateLimit,
    Retry,
    Shared,
    TaskArgument,
    TaskKey,
    Timeout,
)
from .dependencies._logger import TaskLogger
from .dependencies._progress import Progress
from .docket import Docket
from .execution import (
    Disposition,
    Execution,
    ExecutionCancelled,
    ExecutionState,
    TaskCall,
)
from .worker import Worker

# Every Docket registers the built-in tasks; they sit above docket.py (they ask
# for the current docket and worker), so the package hands them over.
_docket_module.STANDARD_TASKS.extend(tasks.standard_tasks)

try:
    __version__ = version("docket-nats")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0"

__all__ = [
    "AdmissionBlocked",
    "Agenda",
    "CallArgument",
    "ConcurrencyLimit",
    "Cooldown",
    "Cron",
    "CurrentDocket",
    "CurrentExecution",
    "CurrentWorker",
    "CycleError",
    "Debounce",
    "Depends",
    "Disposition",
    "Docket",
    "DocketSnapshot",
    "Execution",
    "ExecutionCancelled",
    "ExecutionProgress",
    "ExecutionState",
    "ExponentialRetry",
    "Group",
    "GroupProgress",
    "Logged",
    "MemberOutcome",
    "Perpetual",
    "Priority",
    "Progress",
    "QueueFull",
    "RateLimit",
    "Retry",
    "RunningExecution",
    "Shared",
    "StrikeList",
    "TaskArgument",
    "TaskCall",
    "TaskKey",
    "TaskLogger",
    "Timeout",
    "Worker",
    "__version__",
    "tasks",
    "testing",
]
