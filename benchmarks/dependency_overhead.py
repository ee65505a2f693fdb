"""What dependency injection costs per run, without a server.

    python benchmarks/dependency_overhead.py [--runs 200000]

Calls `run_task` (the worker's call path: context variables, the cached plan,
resolution, teardown, outcome hooks) on tasks with no, one and several
dependencies, against calling the same coroutine function directly.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from docket_nats import CurrentExecution, Depends, Docket, Execution, Retry, TaskKey
from docket_nats.dependencies import run_task


async def no_dependencies(a: int, b: str = "x") -> None:
    return None


async def one_dependency(a: int, key: str = TaskKey()) -> None:
    return None


def configuration() -> int:
    return 1


async def several_dependencies(
    a: int,
    key: str = TaskKey(),
    execution: Execution = CurrentExecution(),
    setting: int = Depends(configuration),
    retry: Retry = Retry(attempts=2),
) -> None:
    return None


async def invoke(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return await function(*args, **kwargs)


async def measure(runs: int) -> None:
    docket = Docket(name="overhead")  # never connected: nothing here needs the server
    threads = ThreadPoolExecutor(1)  # for sync tasks; these are all async
    for function in (no_dependencies, one_dependency, several_dependencies):
        execution = Execution(docket, function, (1,), {}, "key", datetime.now(UTC), 1)
        started = time.perf_counter()
        for _ in range(runs):
            await invoke(function, execution.args, execution.kwargs)
        direct = (time.perf_counter() - started) / runs
        started = time.perf_counter()
        for _ in range(runs):
            await run_task(execution, threads, {}, None)
        resolved = (time.perf_counter() - started) / runs
        print(
            f"{function.__name__:22s} direct {direct * 1e6:6.2f} µs   run_task "
            f"{resolved * 1e6:6.2f} µs   overhead {(resolved - direct) * 1e6:6.2f} µs/run"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200_000)
    asyncio.run(measure(parser.parse_args().runs))


if __name__ == "__main__":
    main()
