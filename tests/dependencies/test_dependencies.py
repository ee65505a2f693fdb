"""Dependency injection: context, Depends (all shapes), caching, nesting, failures."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import pytest

from docket_nats import (
    CurrentDocket,
    CurrentExecution,
    CurrentWorker,
    Depends,
    Docket,
    Execution,
    Retry,
    TaskArgument,
    TaskKey,
    Worker,
)
from docket_nats.dependencies import Dependency, current_execution, plan_for


async def test_contextual_dependencies(docket: Docket, worker: Worker) -> None:
    seen: dict[str, Any] = {}

    async def task(
        value: int,
        d: Docket = CurrentDocket(),
        w: Worker = CurrentWorker(),
        e: Execution = CurrentExecution(),
        key: str = TaskKey(),
    ) -> None:
        seen.update(value=value, docket=d, worker=w, execution=e, key=key)

    await docket.add(task, key="the-key")(7)
    await worker.run_until_finished()
    assert seen["value"] == 7
    assert seen["docket"] is docket
    assert seen["worker"] is worker
    assert seen["execution"].key == "the-key" and seen["execution"].attempt == 1
    assert seen["key"] == "the-key"


def greeting() -> str:
    return "hello"


async def test_annotated_form_with_postponed_annotations(docket: Docket, worker: Worker) -> None:
    # This module uses `from __future__ import annotations`: the metadata is only
    # visible through resolved type hints.
    seen: dict[str, Any] = {}

    async def task(
        d: Annotated[Docket, CurrentDocket()],
        key: Annotated[str, TaskKey()],
        text: Annotated[str, Depends(greeting)],
    ) -> None:
        seen.update(docket=d, key=key, text=text)

    await docket.add(task, key="annotated")()
    await worker.run_until_finished()
    assert seen == {"docket": docket, "key": "annotated", "text": "hello"}


async def test_every_shape_of_depends_with_teardown_order(docket: Docket, worker: Worker) -> None:
    events: list[str] = []

    def plain() -> str:
        return "plain"

    async def coroutine() -> str:
        return "coroutine"

    def generator() -> Iterator[str]:
        events.append("generator up")
        yield "generator"
        events.append("generator down")

    async def async_generator() -> AsyncIterator[str]:
        events.append("async generator up")
        yield "async generator"
        events.append("async generator down")

    @asynccontextmanager
    async def context_manager() -> AsyncIterator[str]:
        events.append("context manager up")
        yield "context manager"
        events.append("context manager down")

    async def task(
        a: str = Depends(plain),
        b: str = Depends(coroutine),
        c: str = Depends(generator),
        d: str = Depends(async_generator),
        e: str = Depends(context_manager),
    ) -> None:
        events.append(f"task {a}, {b}, {c}, {d}, {e}")

    await docket.add(task)()
    await worker.run_until_finished()
    assert events == [
        "generator up",
        "async generator up",
        "context manager up",
        "task plain, coroutine, generator, async generator, context manager",
        # Torn down latest first, after the task.
        "context manager down",
        "async generator down",
        "generator down",
    ]


async def test_teardown_runs_after_a_failing_task_and_sees_its_error(
    docket: Docket, worker: Worker
) -> None:
    events: list[str] = []

    async def connection() -> AsyncIterator[str]:
        try:
            yield "conn"
        except ValueError as error:
            events.append(f"rolled back after {error}")
            raise
        finally:
            events.append("closed")

    async def task(conn: str = Depends(connection)) -> None:
        events.append(f"using {conn}")
        raise ValueError("boom")

    await docket.add(task)()
    await worker.run_until_finished()
    assert events == ["using conn", "rolled back after boom", "closed"]


async def test_one_resolution_per_dependency_per_run(docket: Docket, worker: Worker) -> None:
    calls: list[str] = []
    seen: list[tuple[object, object, object]] = []

    async def database() -> object:
        calls.append("database")
        return object()

    def repository(db: object = Depends(database)) -> object:
        calls.append("repository")
        return ("repo", db)

    async def task(
        db: object = Depends(database),
        again: object = Depends(database),
        repo: tuple[str, object] = Depends(repository),
    ) -> None:
        seen.append((db, again, repo[1]))

    await docket.add(task)()
    await docket.add(task)()
    await worker.run_until_finished()
    assert calls == ["database", "repository"] * 2  # per run, not per parameter
    assert len(seen) == 2
    for db, again, nested in seen:
        assert db is again is nested
    assert seen[0][0] is not seen[1][0]  # a fresh value for each run


async def test_dependencies_of_dependencies_and_task_arguments(
    docket: Docket, worker: Worker
) -> None:
    seen: list[str] = []

    async def customer_name(customer_id: int = TaskArgument()) -> str:
        return f"customer-{customer_id}"

    def greeting(
        name: str = Depends(customer_name),
        tone: str | None = TaskArgument("tone", optional=True),
        key: str = TaskKey(),
    ) -> str:
        return f"{tone or 'hello'} {name} ({key})"

    async def task(customer_id: int, text: str = Depends(greeting), **extra: Any) -> None:
        seen.append(text)

    await docket.add(task, key="k1")(42)
    await docket.add(task, key="k2")(customer_id=7, tone="hey")
    await worker.run_until_finished()
    assert sorted(seen) == ["hello customer-42 (k1)", "hey customer-7 (k2)"]


async def test_an_argument_the_caller_passes_wins_over_the_dependency(
    docket: Docket, worker: Worker
) -> None:
    seen: list[str] = []

    async def task(key: str = TaskKey()) -> None:
        seen.append(key)

    await docket.add(task, key="real")("given")
    await worker.run_until_finished()
    assert seen == ["given"]


async def test_a_failing_dependency_fails_the_task_naming_the_parameter(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []

    async def unreachable() -> str:
        raise ConnectionError("service unavailable")

    async def task(service: str = Depends(unreachable)) -> None:
        ran.append(True)

    caplog.set_level(logging.ERROR, logger="docket_nats")
    await docket.add(task)()
    await worker.run_until_finished()
    assert ran == []
    failures = [record for record in caplog.records if record.exc_info]
    assert failures, "the failed run must be logged with its error"
    error = failures[-1].exc_info[1]  # type: ignore[index]
    assert "service" in str(error) and "service unavailable" in str(error)
    # docket's message names the parameters, not the task (issue #12).
    assert isinstance(error, ExceptionGroup)
    assert error.message == "Failed to resolve dependencies for parameter(s): service"


async def test_a_retry_still_applies_when_a_dependency_fails(
    docket: Docket, worker: Worker
) -> None:
    attempts: list[int] = []

    async def flaky(execution: Execution = CurrentExecution()) -> str:
        attempts.append(execution.attempt)
        if execution.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    async def task(value: str = Depends(flaky), retry: Retry = Retry(attempts=3)) -> None:
        attempts.append(100 + retry.attempt)

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2, 3, 103]


async def test_two_single_dependencies_are_refused_at_registration(docket: Docket) -> None:
    async def task(a: Retry = Retry(attempts=2), b: Retry = Retry(attempts=3)) -> None: ...

    with pytest.raises(ValueError, match="Only one Retry dependency is allowed"):
        await docket.add(task)()


async def test_a_single_dependency_on_both_task_and_worker_fails_the_run(
    docket: Docket, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []

    async def task(retry: Retry = Retry(attempts=2)) -> None:
        ran.append(True)

    caplog.set_level(logging.ERROR, logger="docket_nats")
    await docket.add(task)()
    async with Worker(docket, dependencies={"retry": Retry(attempts=5)}) as worker:
        await worker.run_until_finished()
    assert ran == []
    message = "Only one Retry dependency is allowed"
    assert any(message in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_worker_level_dependencies_wrap_every_run(docket: Docket) -> None:
    events: list[str] = []

    async def traced(key: str = TaskKey()) -> AsyncIterator[None]:
        events.append(f"start {key}")
        yield
        events.append(f"end {key}")

    async def task() -> None:
        events.append("task")

    await docket.add(task, key="w1")()
    async with Worker(docket, dependencies={"trace": Depends(traced)}) as worker:
        await worker.run_until_finished()
    assert events == ["start w1", "task", "end w1"]


async def test_worker_level_dependencies_as_a_list(docket: Docket) -> None:
    """docket also takes `dependencies=[...]`: each wraps every run, a Retry included."""
    events: list[str] = []
    attempts: list[int] = []

    async def traced(key: str = TaskKey()) -> AsyncIterator[None]:
        events.append(f"start {key}")
        try:
            yield
        finally:
            events.append(f"end {key}")

    async def flaky(execution: Execution = CurrentExecution()) -> None:
        attempts.append(execution.attempt)
        if execution.attempt == 1:
            raise RuntimeError("first try fails")

    await docket.add(flaky, key="l1")()
    async with Worker(
        docket,
        dependencies=[Depends(traced), Retry(attempts=2)],
        minimum_check_interval=timedelta(milliseconds=20),
    ) as worker:
        await worker.run_until_finished()
    assert attempts == [1, 2]
    assert events == ["start l1", "end l1", "start l1", "end l1"]


async def test_sync_tasks_see_the_run_context(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    def task(key: str = TaskKey()) -> None:
        # Runs in a worker thread; the context variables came along.
        seen.append(f"{key}/{current_execution.get().key}")

    await docket.add(task, key="sync")()
    await worker.run_until_finished()
    assert seen == ["sync/sync"]


class Audited(Dependency):
    """Wraps the run; sees the argument of the parameter it annotates."""

    events: list[str] = []

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def bind_to_parameter(self, name: str, value: Any) -> Dependency:
        return Audited(f"{name}={value}")

    async def __aenter__(self) -> None:
        Audited.events.append(f"audit {self.value}")


class Resource(Dependency):
    supplies_value = True

    async def __aenter__(self) -> str:
        Audited.events.append("open")
        return "resource"

    async def __aexit__(self, *exc_info: object) -> None:
        Audited.events.append("close")


async def test_custom_dependency_subclass_and_wrapping_annotations(
    docket: Docket, worker: Worker
) -> None:
    Audited.events.clear()

    async def task(
        customer: Annotated[int, Audited()],
        resource: str = Resource(),
    ) -> None:
        Audited.events.append(f"task {customer} {resource}")

    await docket.add(task)(5)
    await worker.run_until_finished()
    assert Audited.events == ["open", "audit customer=5", "task 5 resource", "close"]


def test_a_task_without_dependencies_has_a_trivial_cached_plan() -> None:
    async def task(a: int, b: str = "x") -> None: ...

    plan = plan_for(task)
    assert plan.trivial
    assert plan_for(task) is plan

    async def with_dependency(a: int, key: str = TaskKey()) -> None: ...

    assert not plan_for(with_dependency).trivial
    assert list(plan_for(with_dependency).parameters) == ["key"]


async def test_retry_attempt_through_timedelta_free_path(docket: Docket, worker: Worker) -> None:
    """A zero-delay retry goes straight to the run subject (no schedule)."""
    attempts: list[int] = []

    async def task(retry: Retry = Retry(attempts=2, delay=timedelta(0))) -> None:
        attempts.append(retry.attempt)
        raise RuntimeError("again")

    await docket.add(task)()
    await worker.run_until_finished()
    assert attempts == [1, 2]


async def test_find_and_flood_with_a_keyed_finalizer(docket: Docket, worker: Worker) -> None:
    """A task fans out through CurrentDocket(); every branch asks for the same
    finalizer key, and the server keeps exactly one."""
    from datetime import UTC, datetime

    from docket_nats import Disposition

    events: list[str] = []
    dispositions: list[Disposition] = []

    async def finalize(batch: str) -> None:
        events.append(f"finalize {batch}")

    async def process(batch: str, item: int, d: Docket = CurrentDocket()) -> None:
        events.append(f"item {item}")
        later = datetime.now(UTC) + timedelta(milliseconds=300)
        finalizer = await d.add(finalize, when=later, key=f"finalize-{batch}")(batch)
        dispositions.append(finalizer.disposition)

    async def find(batch: str, d: Docket = CurrentDocket(), key: str = TaskKey()) -> None:
        await d.add_many(d.call(process, key=f"{key}-{n}")(batch, n) for n in range(5))

    await docket.add(find, key="find")("b1")
    await worker.run_until_finished()
    assert sorted(events[:-1]) == [f"item {n}" for n in range(5)]
    assert events[-1] == "finalize b1"
    assert dispositions.count(Disposition.SCHEDULED) == 1
    assert dispositions.count(Disposition.ALREADY_SCHEDULED) == 4
