"""Dependency validation as docket does it, on a real server.

A single dependency (Retry, Timeout, ConcurrencyLimit, Debounce, a Runtime /
FailureHandler / CompletionHandler kind) declared twice is refused at add();
one on both the worker and the task fails that run; a TaskArgument naming a
missing argument or itself fails clearly; a value passed for a dependency
parameter is used as given.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import pytest

from docket_nats import (
    ConcurrencyLimit,
    CycleError,
    Debounce,
    Depends,
    Docket,
    Execution,
    Perpetual,
    Retry,
    TaskArgument,
    Timeout,
    Worker,
)
from docket_nats.dependencies import CompletionHandler, FailureHandler, Runtime, TaskOutcome

pytestmark = pytest.mark.timeout(30)


class InlineRuntime(Runtime["InlineRuntime"]):
    async def __aenter__(self) -> InlineRuntime:
        return self

    async def run(
        self,
        execution: Execution,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return await function(*args, **kwargs)


class IgnoreFailures(FailureHandler["IgnoreFailures"]):
    async def __aenter__(self) -> IgnoreFailures:
        return self

    async def handle_failure(self, execution: Execution, outcome: TaskOutcome) -> bool:
        return True


class Announce(CompletionHandler["Announce"]):
    async def __aenter__(self) -> Announce:
        return self

    async def on_complete(self, execution: Execution, outcome: TaskOutcome) -> bool:
        return False


INLINE_RUNTIME = InlineRuntime()
IGNORE_FAILURES = IgnoreFailures()
ANNOUNCE = Announce()


async def twice_retry(a: Retry = Retry(attempts=2), b: Retry = Retry(attempts=3)) -> None: ...


async def twice_timeout(
    a: Timeout = Timeout(timedelta(seconds=1)), b: Timeout = Timeout(timedelta(seconds=2))
) -> None: ...


async def twice_concurrency(
    customer: Annotated[int, ConcurrencyLimit(1)], other: Annotated[int, ConcurrencyLimit(2)]
) -> None: ...


async def twice_debounce(
    customer: Annotated[int, Debounce(timedelta(seconds=1))],
    other: Annotated[int, Debounce(timedelta(seconds=2))],
) -> None: ...


async def two_runtimes(
    a: Timeout = Timeout(timedelta(seconds=1)), b: InlineRuntime = INLINE_RUNTIME
) -> None: ...


async def two_failure_handlers(
    a: Retry = Retry(attempts=2), b: IgnoreFailures = IGNORE_FAILURES
) -> None: ...


async def two_completion_handlers(
    a: Perpetual = Perpetual(every=timedelta(seconds=1)), b: Announce = ANNOUNCE
) -> None: ...


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (twice_retry, "Only one Retry dependency is allowed"),
        (twice_timeout, "Only one Timeout dependency is allowed"),
        (twice_concurrency, "Only one ConcurrencyLimit dependency is allowed"),
        (twice_debounce, "Only one Debounce dependency is allowed"),
        (two_runtimes, "Only one Runtime dependency is allowed"),
        (two_failure_handlers, "Only one FailureHandler dependency is allowed"),
        (two_completion_handlers, "Only one CompletionHandler dependency is allowed"),
    ],
)
async def test_a_single_dependency_declared_twice_is_refused_at_add(
    docket: Docket, task: Callable[..., Awaitable[None]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await docket.add(task)(1, 2)
    assert task.__name__ not in docket.tasks


async def test_a_worker_dependency_clashing_with_the_task_fails_that_run(
    docket: Docket, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []

    async def task(deadline: Timeout = Timeout(timedelta(seconds=5))) -> None:
        ran.append(True)

    caplog.set_level(logging.ERROR, logger="docket_nats")
    execution = await docket.add(task)()
    async with Worker(docket, dependencies={"deadline": InlineRuntime()}) as worker:
        await worker.run_until_finished()
    assert ran == []
    assert "Only one Runtime dependency is allowed" in caplog.text
    with pytest.raises(Exception, match="Only one Runtime dependency is allowed"):
        await execution.get_result(timeout=timedelta(seconds=5))


async def test_a_task_argument_naming_a_missing_argument_fails_clearly(
    docket: Docket, worker: Worker
) -> None:
    def lookup(customer_id: int = TaskArgument("customer_id")) -> str:
        return f"customer {customer_id}"

    async def task(name: str = Depends(lookup)) -> None: ...

    execution = await docket.add(task)()
    await worker.run_until_finished()
    with pytest.raises(Exception) as raised:
        await execution.get_result(timeout=timedelta(seconds=5))
    text = str(raised.value)
    assert "Failed to resolve dependencies for parameter(s): name" in text
    assert "KeyError" in text and "customer_id" in text


async def test_a_task_argument_asking_for_itself_fails_with_cycle_error(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[bool] = []

    async def task(customer_id: int = TaskArgument("customer_id")) -> None:
        ran.append(True)

    caplog.set_level(logging.ERROR, logger="docket_nats")
    await docket.add(task)()
    await worker.run_until_finished()
    assert ran == []
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert errors and isinstance(errors[-1], ExceptionGroup)
    group: ExceptionGroup[Exception] = errors[-1]
    assert isinstance(group.exceptions[0], CycleError)
    assert "customer_id -> customer_id" in str(group.exceptions[0])


async def test_a_value_passed_for_a_dependency_is_used_as_given(
    nats_url: str, docket_name: str
) -> None:
    attempts: list[int] = []
    received: list[Any] = []

    async def task(retry: Retry = Retry(attempts=1)) -> None:
        received.append(retry)
        attempts.append(len(attempts) + 1)
        raise RuntimeError("always")

    # A Retry is no msgspec value: it travels pickled, as with docket's cloudpickle.
    async with Docket(name=docket_name, url=nats_url, allow_pickle=True) as docket:
        await docket.add(task)(retry=Retry(attempts=3))
        async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
            await worker.run_until_finished()
    assert all(type(value) is Retry and value.attempts == 3 for value in received)
    assert attempts == [1, 2, 3], "the given Retry, not the declared one, handled the failures"


async def test_worker_dependencies_are_checked_when_the_worker_is_built(docket: Docket) -> None:
    def session() -> str:
        return "s"

    with pytest.raises(TypeError, match="Worker dependency 'session' must be a Dependency"):
        Worker(docket, dependencies={"session": session})
    with pytest.raises(TypeError, match="Worker dependency 'index 1' must be a Dependency"):
        Worker(docket, dependencies=[Depends(session), "not one"])
    with pytest.raises(ValueError, match="'__secret' is reserved"):
        Worker(docket, dependencies={"__secret": Depends(session)})
    listed = Worker(docket, dependencies=[Depends(session), Retry(attempts=2)])
    assert list(listed.dependencies) == ["__worker_dep_0__", "__worker_dep_1__"]
