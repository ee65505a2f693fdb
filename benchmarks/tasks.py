"""Task functions the benchmark workers run.

`collection` is for running a worker by hand, e.g.

    python -m docket_nats worker --tasks benchmarks.tasks:collection --url nats://...

The same plain functions work for docket and docket-nats (no dependencies).
`completed` counts the no-op runs of this process, so a worker process can say
when it reached a target.
"""

from __future__ import annotations

import time
from collections.abc import Callable

completed = 0
last_completed_at = 0.0
# Called with the count after each completion (set by the worker process).
on_completed: Callable[[int], None] | None = None


async def noop() -> None:
    global completed, last_completed_at
    completed += 1
    last_completed_at = time.perf_counter()
    if on_completed is not None:
        on_completed(completed)


collection = [noop]
