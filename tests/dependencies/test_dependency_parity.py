"""Dependency injection as docket does it (on uncalled-for), on a real server.

One test per behavior: every kind of Depends factory, nesting, the per-run
cache, isolation of concurrent runs, Shared factories using Depends,
CallArgument, CycleError, Annotated forms, failures reported together, and
the worker_lifecycle hook of Dependency classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Annotated, Any

import pytest
from uncalled_for import Provided

from docket_nats import (
    CallArgument,
    CycleError,
    Depends,
    Docket,
    Shared,
    TaskArgument,
    TaskKey,
    Worker,
)
from docket_nats.dependencies import Dependency

pytestmark = pytest.mark.timeout(30)

LOG: list[str] = []  # module level: Annotated hints below resolve names here


def sync_value() -> str:
    return "sync"


async def async_value() -> str:
    return "async"


@contextmanager
def sync_manager() -> Iterator[str]:
    LOG.append("sync manager in")
    yield "sync manager"
    LOG.append("sync manager out")


@asynccontextmanager
async def async_manager() -> AsyncIterator[str]:
    LOG.append("async manager in")
    yield "async manager"
    LOG.append("async manager out")


async def test_depends_on_sync_async_and_context_manager_factories(
    docket: Docket, worker: Worker
) -> None:
    LOG.clear()

    async def task(
        a: str = Depends(sync_value),
        b: str = Depends(async_value),
        c: str = Depends(sync_manager),
        d: str = Depends(async_manager),
    ) -> None:
        LOG.append(f"task {a} {b} {c} {d}")

    await docket.add(task)()
    await worker.run_until_finished()
    assert LOG == [
        "sync manager in",
        "async manager in",
        "task sync async sync manager async manager",
        "async manager out",
        "sync manager out",
    ]


async def test_nested_dependencies_see_the_task_arguments(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    def account(account_id: int = TaskArgument()) -> str:
        return f"account-{account_id}"

    async def statement(owner: str = Depends(account), key: str = TaskKey()) -> str:
        return f"statement of {owner} for {key}"

    async def task(account_id: int, text: str = Depends(statement)) -> None:
        seen.append(text)

    await docket.add(task, key="s1")(12)
    await worker.run_until_finished()
    assert seen == ["statement of account-12 for s1"]


async def test_one_call_per_factory_per_run(docket: Docket, worker: Worker) -> None:
    calls: list[str] = []
    seen: list[tuple[object, object]] = []

    def connection(key: str = TaskKey()) -> object:
        calls.append(key)
        return object()

    def repository(db: object = Depends(connection)) -> object:
        return db

    async def task(db: object = Depends(connection), repo: object = Depends(repository)) -> None:
        seen.append((db, repo))

    await docket.add(task, key="r1")()
    await docket.add(task, key="r2")()
    await worker.run_until_finished()
    assert sorted(calls) == ["r1", "r2"], "once per run, for every run"
    assert all(db is repo for db, repo in seen)
    assert seen[0][0] is not seen[1][0]


async def test_concurrent_runs_keep_their_own_values(docket: Docket) -> None:
    both_inside = asyncio.Event()
    inside: list[str] = []
    seen: dict[str, str] = {}

    async def tagged(key: str = TaskKey()) -> AsyncIterator[str]:
        yield f"value of {key}"

    async def task(value: str = Depends(tagged), key: str = TaskKey()) -> None:
        inside.append(key)
        if len(inside) == 2:
            both_inside.set()
        # Both runs are resolved and waiting here at once: each keeps its own.
        await asyncio.wait_for(both_inside.wait(), timeout=10)
        seen[key] = value

    await docket.add(task, key="c1")()
    await docket.add(task, key="c2")()
    async with Worker(docket, concurrency=2) as worker:
        await worker.run_until_finished()
    assert seen == {"c1": "value of c1", "c2": "value of c2"}


async def test_a_shared_factory_may_use_depends(docket: Docket) -> None:
    settings_calls: list[int] = []

    def settings() -> dict[str, str]:
        settings_calls.append(1)
        return {"dsn": "db://test"}

    async def pool(config: dict[str, str] = Depends(settings)) -> str:
        return f"pool on {config['dsn']}"

    seen: list[str] = []

    async def task(p: str = Shared(pool)) -> None:
        seen.append(p)

    for _ in range(3):
        await docket.add(task)()
    async with Worker(docket, concurrency=1) as worker:
        await worker.run_until_finished()
    assert seen == ["pool on db://test"] * 3
    assert settings_calls == [1], "made once, with the shared value"


async def test_call_argument_reads_sibling_values_and_defaults(
    docket: Docket, worker: Worker
) -> None:
    seen: list[str] = []

    def region(tenant: str = CallArgument(), zone: str = CallArgument("zone")) -> str:
        return f"{tenant}@{zone}"

    async def task(
        tenant: str = Depends(lambda: "tenant-from-dependency"),
        zone: str = "eu-1",
        where: str = Depends(region),
    ) -> None:
        seen.append(where)

    await docket.add(task)()
    await worker.run_until_finished()
    assert seen == ["tenant-from-dependency@eu-1"]


async def test_call_arguments_in_a_cycle_fail_the_run_with_cycle_error(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []

    async def task(a: int = CallArgument("b"), b: int = CallArgument("a")) -> None:
        ran.append(True)

    caplog.set_level(logging.ERROR, logger="docket_nats")
    await docket.add(task)()
    await worker.run_until_finished()
    assert ran == []
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert errors and isinstance(errors[-1], ExceptionGroup)
    group: ExceptionGroup[Exception] = errors[-1]
    assert group.message == "Failed to resolve dependencies for parameter(s): a, b"
    assert all(isinstance(error, CycleError) for error in group.exceptions)
    assert "a -> b -> a" in str(group.exceptions[0])


class Recorded(Dependency[None]):
    """Wraps the run (no value): sees the argument of the parameter it annotates."""

    def __init__(self, seen: str = "") -> None:
        self.seen = seen

    def bind_to_parameter(self, name: str, value: Any) -> Recorded:
        return Recorded(f"{name}={value}")

    async def __aenter__(self) -> None:
        LOG.append(f"recorded {self.seen}")


async def test_annotated_forms(docket: Docket, worker: Worker) -> None:
    LOG.clear()

    async def task(
        order: Annotated[int, Recorded()],
        label: Annotated[str, Depends(sync_value)],
        status: Annotated[str, Depends(async_value)] = Provided,
    ) -> None:
        LOG.append(f"task {order} {label} {status}")

    await docket.add(task)(5)
    await worker.run_until_finished()
    assert LOG == ["recorded order=5", "task 5 sync async"]


async def test_every_failing_dependency_is_reported_together(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_cache() -> str:
        raise ConnectionError("cache is down")

    async def broken_db() -> str:
        raise PermissionError("db refused the login")

    async def task(a: str = Depends(broken_cache), b: str = Depends(broken_db)) -> None: ...

    caplog.set_level(logging.ERROR, logger="docket_nats")
    execution = await docket.add(task)()
    await worker.run_until_finished()
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert errors and isinstance(errors[-1], ExceptionGroup)
    group: ExceptionGroup[Exception] = errors[-1]
    assert group.message == "Failed to resolve dependencies for parameter(s): a, b"
    assert [type(error) for error in group.exceptions] == [ConnectionError, PermissionError]
    # Each error is in the log, with its traceback.
    assert "cache is down" in caplog.text and "db refused the login" in caplog.text
    with pytest.raises(Exception, match="Failed to resolve dependencies for parameter"):
        await execution.get_result(timeout=timedelta(seconds=5))


class WithLifecycle(Dependency[str]):
    """A dependency class that keeps something running while a worker runs."""

    events: list[str] = []

    @classmethod
    @asynccontextmanager
    async def worker_lifecycle(cls, docket: Docket, worker: Worker) -> AsyncIterator[None]:
        cls.events.append(f"up {worker.name}")
        yield
        cls.events.append(f"down {worker.name}")

    async def __aenter__(self) -> str:
        WithLifecycle.events.append("run")
        return "ok"


class WithoutLifecycle(Dependency[str]):
    """Its hook returns no context manager: the worker skips it."""

    called: list[str] = []

    @classmethod
    def worker_lifecycle(cls, docket: Docket, worker: Worker) -> None:
        cls.called.append("hook")

    async def __aenter__(self) -> str:
        return "ok"


async def test_worker_lifecycle_hook_entered_once_around_the_worker(docket: Docket) -> None:
    WithLifecycle.events.clear()
    WithoutLifecycle.called.clear()

    async def first(x: str = WithLifecycle(), y: str = WithoutLifecycle()) -> None: ...

    async def second(x: str = WithLifecycle()) -> None: ...

    await docket.add(first)()
    await docket.add(second)()
    await docket.add(second)()
    async with Worker(docket, name="w-1") as worker:
        await worker.run_until_finished()
    assert WithLifecycle.events == ["up w-1", "run", "run", "run", "down w-1"]
    assert WithoutLifecycle.called == ["hook"], "called, returned None, skipped"


async def test_docket_resolution_helpers(docket: Docket) -> None:
    from datetime import UTC, datetime

    from docket_nats import Execution, Retry
    from docket_nats.dependencies import (
        FailedDependency,
        get_single_dependency_of_type,
        get_single_dependency_parameter_of_type,
        resolved_dependencies,
    )

    def broken() -> str:
        raise LookupError("nothing here")

    declared = Retry(attempts=4)

    async def task(
        value: int, key: str = TaskKey(), bad: str = Depends(broken), retry: Retry = declared
    ) -> None: ...

    assert get_single_dependency_parameter_of_type(task, Retry) is declared
    execution = Execution(docket, task, (1,), {}, "helper-key", datetime.now(UTC), 1)
    async with Worker(docket) as worker:
        async with resolved_dependencies(worker, execution) as resolved:
            assert resolved["key"] == "helper-key"
            failed = resolved["bad"]
            assert isinstance(failed, FailedDependency)
            assert failed.parameter == "bad" and isinstance(failed.error, LookupError)
            retry = get_single_dependency_of_type(resolved, Retry)
            assert retry is not None and retry.attempts == 4
