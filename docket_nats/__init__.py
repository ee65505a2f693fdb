"""docket-nats: docket's API for distributed background tasks, on NATS JetStream.

`from docket import ...` becomes `from docket_nats import ...`.
"""

from importlib.metadata import PackageNotFoundError, version

from . import tasks
from .agenda import Agenda
from .annotations import Logged
from .dependencies import (
    Cron,
    CurrentDocket,
    CurrentExecution,
    CurrentWorker,
    Depends,
    ExponentialRetry,
    Perpetual,
    Retry,
    TaskArgument,
    TaskKey,
    Timeout,
)
from .dependencies.logger import TaskLogger
from .docket import Docket
from .execution import (
    Disposition,
    Execution,
    ExecutionCancelled,
    ExecutionState,
    TaskCall,
)
from .strikes import StrikeList
from .worker import Worker

try:
    __version__ = version("docket-nats")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0"

__all__ = [
    "Agenda",
    "Cron",
    "CurrentDocket",
    "CurrentExecution",
    "CurrentWorker",
    "Depends",
    "Disposition",
    "Docket",
    "Execution",
    "ExecutionCancelled",
    "ExecutionState",
    "ExponentialRetry",
    "Logged",
    "Perpetual",
    "Retry",
    "StrikeList",
    "TaskArgument",
    "TaskCall",
    "TaskKey",
    "TaskLogger",
    "Timeout",
    "Worker",
    "__version__",
    "tasks",
]
