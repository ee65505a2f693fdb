"""Bad input and failures inside a worker: each is logged clearly, the worker
keeps running, and nothing is lost silently (what can never run is parked as a
dead letter with the reason, and `docket.dead_letters()` lists it)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from docket_nats import CurrentDocket, Docket, TaskKey, Worker
from docket_nats._wire import TaskEnvelope, encode_envelope
from docket_nats.cli import main
from docket_nats.worker._executor import Executor
from docket_nats.worker._puller import Puller

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def producer(nats_url: str, docket: Docket) -> AsyncIterator[Docket]:
    """Another process's Docket on the same docket name: its own registrations."""
    async with Docket(name=docket.name, url=nats_url) as other:
        yield other


def parked_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and "as a dead letter" in record.getMessage()
    ]


async def prove_still_working(docket: Docket, worker: Worker) -> None:
    """After the fault, the same worker still runs an ordinary task."""
    ran: list[str] = []

    async def afterwards(label: str) -> None:
        ran.append(label)

    await docket.add(afterwards)("still here")
    await worker.run_until_finished()
    assert ran == ["still here"]


# -- 1. unknown task names -------------------------------------------------------


async def test_an_unknown_task_is_parked_and_the_worker_carries_on(
    docket: Docket, worker: Worker, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")

    async def only_elsewhere(order: int) -> None:
        raise AssertionError("this worker does not have the function: it must not run")

    async with producer(nats_url, docket) as other:
        await other.add(only_elsewhere, key="stranger")(7)
    assert "only_elsewhere" not in docket.tasks

    await worker.run_until_finished()

    assert parked_lines(caplog) == [
        "parking task 'stranger' as a dead letter: unknown task 'only_elsewhere': "
        "no worker function is registered under that name"
    ]
    (letter,) = await docket.dead_letters()
    assert (letter.key, letter.function, letter.worker) == (
        "stranger",
        "only_elsewhere",
        worker.name,
    )
    assert "unknown task 'only_elsewhere'" in letter.reason
    assert letter.data  # the original message, kept whole for a later replay
    await prove_still_working(docket, worker)


async def test_a_fallback_task_runs_instead_of_an_unknown_one(
    docket: Docket, nats_url: str
) -> None:
    received: list[tuple[Any, ...]] = []

    async def fallback(*args: Any, **kwargs: Any) -> None:
        received.append((args, kwargs))

    async def only_elsewhere(order: int, priority: str = "low") -> None: ...

    async with producer(nats_url, docket) as other:
        await other.add(only_elsewhere)(7, priority="high")

    async with Worker(docket, fallback_task=fallback) as worker:
        await worker.run_until_finished()

    assert received == [((7,), {"priority": "high"})]
    assert await docket.dead_letters() == []


# -- 2. messages that do not decode ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc1 not msgpack at all", "not a task envelope"),
        (msgspec.msgpack.encode({"hello": "world"}), "not a task envelope"),
        (
            encode_envelope(TaskEnvelope(v=99, key="k", function="trace", when=datetime.now(UTC))),
            "envelope version 99 is newer",
        ),
    ],
    ids=["garbage", "wrong-shape", "newer-version"],
)
async def test_a_message_that_does_not_decode_is_parked(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture, data: bytes, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")
    await docket.connection.js.publish(docket.names.run("mangled"), data)

    await worker.run_until_finished()

    (line,) = parked_lines(caplog)
    assert line.startswith("parking task 'mangled' as a dead letter: ") and reason in line
    (letter,) = await docket.dead_letters()
    assert (letter.key, letter.function) == ("mangled", None)
    assert reason in letter.reason
    assert letter.data == data
    await prove_still_working(docket, worker)


# -- 3. arguments that no longer fit ---------------------------------------------


async def test_arguments_that_no_longer_fit_the_signature_are_parked(
    docket: Docket, worker: Worker, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer still has an old version of `greet`; the worker has the new one."""
    caplog.set_level(logging.INFO, logger="docket_nats")
    calls: list[tuple[str, int]] = []

    async def greet(name: str, count: int) -> None:  # the worker's (current) version
        calls.append((name, count))

    docket.register(greet)

    def old_version() -> Any:
        async def greet(*args: Any, **kwargs: Any) -> None: ...  # whatever it was

        return greet

    async with producer(nats_url, docket) as other:
        other.register(old_version())
        await other.add("greet", key="too-many-positional")("ada", 1, "surplus")
        await other.add("greet", key="unknown-keyword")("ada", 1, shout=True)
        await other.add("greet", key="missing-required")("ada")
        await other.add("greet", key="given-twice")("ada", 1, count=2)

    await worker.run_until_finished()

    assert calls == []
    reasons = {letter.key: letter.reason for letter in await docket.dead_letters()}
    assert reasons == {
        "too-many-positional": "greet() takes 2 positional arguments but 3 were sent",
        "unknown-keyword": "greet() got an unexpected keyword argument 'shout'",
        "missing-required": "greet() is missing the required argument 'count'",
        "given-twice": "greet() got multiple values for argument 'count'",
    }
    assert len(parked_lines(caplog)) == 4
    await prove_still_working(docket, worker)


async def test_an_argument_of_the_wrong_type_runs_as_sent_with_a_warning(
    docket: Docket, worker: Worker, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Python does not enforce annotations, and neither does docket: the task runs
    with the value it was sent, and the mismatch is logged."""
    caplog.set_level(logging.INFO, logger="docket_nats")
    calls: list[Any] = []

    async def tally(count: int) -> None:
        calls.append(count)

    docket.register(tally)

    async def tally_text(count: str) -> None: ...

    async with producer(nats_url, docket) as other:
        other.register(tally_text, names=["tally"])
        await other.add("tally")("three")

    await worker.run_until_finished()

    assert calls == ["three"]
    assert "argument 'count' of tally() does not match its annotation" in caplog.text
    assert await docket.dead_letters() == []


# -- 4. tasks that raise ---------------------------------------------------------


async def test_a_task_that_raises_is_logged_acked_and_not_redelivered(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")
    attempts: list[int] = []

    async def explode(number: int) -> None:
        attempts.append(number)
        raise ValueError(f"kaboom {number}")

    await docket.add(explode, key="explosive")(1)
    await worker.run_until_finished()  # returns only once the message was acked

    assert attempts == [1]
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "explode" in failures[0].getMessage() and "failed" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert "ValueError: kaboom 1" in caplog.text  # the traceback is in the log
    info = await docket.connection.js.stream_info(docket.names.stream)
    assert info.state.messages == 0
    assert await docket.dead_letters() == []  # a failure is an outcome, not a dead letter
    await prove_still_working(docket, worker)
    assert attempts == [1]


# -- 10. actors that crash -------------------------------------------------------


@pytest.mark.parametrize("actor", ["puller", "executor"])
async def test_a_crashed_actor_is_restarted_and_tasks_keep_running(
    docket: Docket,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    actor: str,
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")
    cls, method = {"puller": (Puller, "_pull_if_needed"), "executor": (Executor, "run")}[actor]
    original = getattr(cls, method)
    crashes = 0

    async def crash_once(self: Any, *args: Any) -> Any:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError(f"injected fault in the {actor}")
        return await original(self, *args)

    monkeypatch.setattr(cls, method, crash_once)
    ran: list[int] = []

    async def work(number: int) -> None:
        ran.append(number)

    for number in range(5):
        await docket.add(work)(number)
    await worker.run_until_finished()

    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert worker._supervisor.restarts == {actor: 1}  # pyright: ignore[reportPrivateUsage]
    crash_lines = [r for r in caplog.records if "crashed; restarting" in r.getMessage()]
    assert len(crash_lines) == 1
    assert f"actor '{actor}' of worker {worker.name} crashed" in crash_lines[0].getMessage()
    assert crash_lines[0].exc_info is not None


# -- the dead-letters command ----------------------------------------------------


async def test_the_dead_letters_command_lists_parked_tasks(
    docket: Docket, worker: Worker, nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await docket.connection.js.publish(docket.names.run("first"), b"\xc1 junk")

    async def gone(x: int) -> None: ...

    async with producer(nats_url, docket) as other:
        await other.add(gone, key="second")(1)
    await worker.run_until_finished()

    async def dead_letters(*extra: str) -> int:
        # The command runs its own event loop: in a thread, beside this test's.
        arguments = ["dead-letters", "--url", nats_url, "--docket", docket.name, *extra]
        return await asyncio.to_thread(main, arguments)

    assert await dead_letters("--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["key"], row["function"], row["worker"]) for row in rows] == [
        ("first", None, worker.name),
        ("second", "gone", worker.name),
    ]
    assert "not a task envelope" in rows[0]["reason"]
    assert "unknown task 'gone'" in rows[1]["reason"]
    assert datetime.fromisoformat(rows[0]["parked_at"]) <= datetime.now(UTC)

    assert await dead_letters("--limit", "1") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["parked_at", "key", "function", "worker", "reason"]
    assert len(table) == 2 and " first " in table[1] and "not a task envelope" in table[1]


# -- stopping never hangs ------------------------------------------------------


async def test_cancelling_run_until_finished_always_ends_it_promptly(docket: Docket) -> None:
    """Cancelled at many points (mid emptiness check, mid task, mid stop, twice),
    the run ends within a bound every time, and the worker can run again."""
    started = asyncio.Event()

    async def linger() -> None:
        started.set()
        await asyncio.sleep(60)

    await docket.add(linger, key="linger")()
    # A future task keeps the docket non-empty: only the cancellation ends the run.
    await docket.add(linger, when=datetime.now(UTC) + timedelta(hours=1), key="later")()
    async with Worker(
        docket,
        minimum_check_interval=timedelta(milliseconds=5),
        shutdown_grace=timedelta(milliseconds=300),
    ) as worker:
        for attempt in range(24):
            run = asyncio.create_task(worker.run_until_finished())
            if attempt == 0:
                await started.wait()
            else:
                await asyncio.sleep(attempt * 0.002)
            run.cancel()
            if attempt % 2:
                await asyncio.sleep(0.01)
                run.cancel()  # again, while it stops: the stop still completes
            async with asyncio.timeout(5):
                await asyncio.gather(run, return_exceptions=True)
            assert worker.slots.held == 0
        await docket.cancel("later")
        await docket.cancel("linger")
        await prove_still_working(docket, worker)


async def test_run_until_finished_does_not_end_while_a_task_replaces_itself(
    docket: Docket, worker: Worker
) -> None:
    """A replace purges the running task's own message before publishing the next,
    so the stream is empty for a moment while work remains: that moment must not
    end the run (it did, about one run in ten, before the emptiness check was
    made twice around an idle check)."""
    runs: list[str] = []

    async def again(key: str = TaskKey(), docket: Docket = CurrentDocket()) -> None:
        runs.append(key)
        await docket.replace(again, when=datetime.now(UTC) + timedelta(milliseconds=20), key=key)()

    for round_ in range(15):
        await docket.add(again, key=f"loop-{round_}")()
        await worker.run_at_most({f"loop-{round_}": 3})
        assert runs.count(f"loop-{round_}") == 3, runs
