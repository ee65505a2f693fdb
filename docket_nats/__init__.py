"""docket-nats: docket's API for distributed background tasks, on NATS JetStream.

`from docket import ...` becomes `from docket_nats import ...`.
"""

from importlib.metadata import PackageNotFoundError, version

from . import tasks
from .docket import Docket
from .execution import (
    Disposition,
    Execution,
    ExecutionCancelled,
    ExecutionState,
    TaskCall,
)
from .worker import Worker

try:
    __version__ = version("docket-nats")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0"

__all__ = [
    "Disposition",
    "Docket",
    "Execution",
    "ExecutionCancelled",
    "ExecutionState",
    "TaskCall",
    "Worker",
    "__version__",
    "tasks",
]
