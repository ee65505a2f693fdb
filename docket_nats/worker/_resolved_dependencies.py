"""docket's `resolved_dependencies(worker, execution)`: a run's dependencies by hand.

For code that wants what a task would receive without running it (docket's
helper, exported from `docket_nats.dependencies`). It sets the run's context
variables as the worker does for its own runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from uncalled_for import FailedDependency
from uncalled_for.functional import _Depends  # pyright: ignore[reportPrivateUsage]

from ..dependencies._base import current_docket, current_execution, current_worker_context
from ..dependencies._plans import plan_for
from ..dependencies._resolution import resolve
from ._worker import current_worker

if TYPE_CHECKING:
    from ..execution import Execution
    from ._worker import Worker


@asynccontextmanager
async def resolved_dependencies(
    worker: Worker, execution: Execution
) -> AsyncGenerator[dict[str, Any]]:
    """docket's helper: the run's dependency values by parameter, entered until exit.

    A dependency that failed is a `FailedDependency` in its place; the worker's
    own dependencies appear as `__worker_dep__<name>`.
    """
    tokens = (
        current_docket.set(worker.docket),
        current_worker.set(worker),
        current_execution.set(execution),
        current_worker_context.set(worker.context),
    )
    worker.shared_values.activate()
    cache_token = _Depends.cache.set({})
    try:
        async with AsyncExitStack() as stack:
            stack_token = _Depends.stack.set(stack)
            try:
                plan = plan_for(execution.function)
                resolution = await resolve(execution, plan, worker.dependencies)
                arguments: dict[str, Any] = {
                    f"__worker_dep__{name}": value
                    for name, value in resolution.worker_values.items()
                }
                arguments.update(
                    (name, value)
                    for name, value in resolution.arguments.items()
                    if name in plan.parameters
                )
                arguments.update(
                    (name, FailedDependency(name, error))
                    for name, error in resolution.failures.items()
                )
                yield arguments
            finally:
                _Depends.stack.reset(stack_token)
    finally:
        _Depends.cache.reset(cache_token)
        current_worker_context.reset(tokens[3])
        current_execution.reset(tokens[2])
        current_worker.reset(tokens[1])
        current_docket.reset(tokens[0])
