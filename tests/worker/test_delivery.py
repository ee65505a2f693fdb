"""Delivery guarantees under faults: connection loss, server restarts, workers
killed or stopped mid-task, poison messages. Real nats-server processes and real
worker processes; every wait is bounded."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import worker_process
from worker_process import Probe, WorkerProcess, spawn

from docket_nats import Docket, Worker
from docket_nats._embedded import ServerProcess

pytestmark = pytest.mark.timeout(90)


def register_probes(docket: Docket) -> None:
    for function in worker_process.tasks:
        docket.register(function)


@pytest.fixture
async def processes() -> AsyncIterator[list[WorkerProcess]]:
    """Worker processes a test starts; whatever is still alive is killed after it."""
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        await process.kill()


async def start_process(
    processes: list[WorkerProcess], tmp_path: Path, url: str, name: str, *options: str
) -> WorkerProcess:
    log = tmp_path / f"worker-{len(processes)}.log"
    process = await spawn(log, url, name, *options)
    processes.append(process)
    return process


def quick_worker(docket: Docket, **options: object) -> Worker:
    settings: dict[str, object] = {
        "redelivery_timeout": timedelta(seconds=2),
        "minimum_check_interval": timedelta(milliseconds=20),
        "shutdown_grace": timedelta(milliseconds=100),
        "schedule_automatic_tasks": False,
    }
    settings.update(options)
    return Worker(docket, **settings)  # pyright: ignore[reportArgumentType]


# -- the connection and the server -----------------------------------------------


async def test_tasks_survive_the_connection_dropping_and_coming_back(
    own_server: ServerProcess, docket_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")
    async with Docket(name=docket_name, url=own_server.url) as docket:
        register_probes(docket)
        probe = await Probe.start(docket)
        async with quick_worker(docket) as worker:
            running = asyncio.create_task(worker.run_forever())
            await docket.add(worker_process.note)("before")
            await probe.wait_event("done", "before")
            # Running while the server goes away: it finishes, its ack waits for
            # the connection, and it is not run a second time.
            await docket.add(worker_process.hold)("across", 1.0)
            await probe.wait_event("started", "across")

            await asyncio.to_thread(own_server.stop)
            # Added while the server is down: the publishes wait in nats-py's
            # pending buffer and complete once the connection is back.
            during = [
                asyncio.ensure_future(docket.add(worker_process.note)(f"during-{n}"))
                for n in range(3)
            ]
            # Not synchronisation: gives the adds time to be issued while it is down.
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in during)
            await asyncio.to_thread(own_server.start)

            async with asyncio.timeout(15):
                await asyncio.gather(*during)
            await docket.add(worker_process.note)("after")
            for label in ["across", "during-0", "during-1", "during-2", "after"]:
                await probe.wait_event("done", label, within=15)
            # Every message was acked: the work stream is empty again.
            async with asyncio.timeout(10):
                # Polled: the stream emptying is no event anyone could await.
                while (await docket.connection.js.stream_info(docket.names.stream)).state.messages:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            worker.stop()
            async with asyncio.timeout(10):
                await running

    assert "disconnected from NATS" in caplog.text
    assert "reconnected to NATS" in caplog.text
    # Each task ran exactly once.
    assert sorted((event.event, event.label) for event in probe.events) == [
        ("done", "across"),
        ("done", "after"),
        ("done", "before"),
        ("done", "during-0"),
        ("done", "during-1"),
        ("done", "during-2"),
        ("started", "across"),
    ]


async def test_stopping_never_hangs_while_the_server_is_gone(
    own_server: ServerProcess, docket_name: str
) -> None:
    closing_at = 0.0
    async with Docket(name=docket_name, url=own_server.url) as docket:
        register_probes(docket)
        probe = await Probe.start(docket)
        async with quick_worker(docket, shutdown_grace=timedelta(milliseconds=200)) as worker:
            running = asyncio.create_task(worker.run_forever())
            await docket.add(worker_process.hold)("stranded", 30)
            await probe.wait_event("started", "stranded")
            await asyncio.to_thread(own_server.kill)
            stopped_at = time.monotonic()
            worker.stop()
            async with asyncio.timeout(10):
                await running
            assert time.monotonic() - stopped_at < 2  # the 0.2 s grace, no request timeouts

            # run_until_finished cannot know the docket is empty without the
            # server: it waits (and does not fail) until the server is back.
            finishing = asyncio.create_task(worker.run_until_finished())
            await asyncio.sleep(0.3)
            assert not finishing.done()
            await asyncio.to_thread(own_server.start)
            # The handed-back task runs again here; a short grace cuts it off.
            await probe.wait_event("started", "stranded", count=2, within=15)
            worker.stop()
            async with asyncio.timeout(10):
                await finishing
        # Closing the docket with the server gone again neither hangs nor raises.
        await asyncio.to_thread(own_server.kill)
        closing_at = time.monotonic()
    assert time.monotonic() - closing_at < 2


async def test_scheduled_and_queued_tasks_survive_a_server_restart(
    own_server: ServerProcess, docket_name: str
) -> None:
    async with Docket(name=docket_name, url=own_server.url) as docket:
        register_probes(docket)
        probe = await Probe.start(docket)
        due = datetime.now(UTC) + timedelta(seconds=3)
        await docket.add(worker_process.note, when=due, key="later")("scheduled")
        await docket.add(worker_process.note, key="now")("queued")

        # Nothing runs them before the restart: no worker yet.
        await asyncio.to_thread(own_server.stop)
        await asyncio.to_thread(own_server.start)

        async with quick_worker(docket) as worker:
            async with asyncio.timeout(20):
                await worker.run_until_finished()
        ran_at = datetime.now(UTC)

    assert sorted(event.label for event in probe.events) == ["queued", "scheduled"]
    assert ran_at >= due  # the scheduled one still waited for its time


# -- workers that die, and workers that live -------------------------------------


async def test_a_killed_workers_task_runs_again_after_the_redelivery_timeout(
    docket: Docket, nats_url: str, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    register_probes(docket)
    probe = await Probe.start(docket)
    doomed = await start_process(
        processes, tmp_path, nats_url, docket.name, "--redelivery-timeout", "2"
    )
    await docket.add(worker_process.hold, key="mid-task")("mid-task", 30)
    first = await probe.wait_event("started", "mid-task")
    assert first.pid == doomed.pid

    await doomed.kill()  # SIGKILL: no nak, no goodbye
    killed_at = time.monotonic()
    async with quick_worker(docket) as survivor:
        running = asyncio.create_task(survivor.run_forever())
        second = await probe.wait_event("started", "mid-task", count=2, within=15)
        waited = time.monotonic() - killed_at
        survivor.stop()
        async with asyncio.timeout(10):
            await running

    assert second.pid != doomed.pid
    # Not before the redelivery timeout (2 s), and not much after it.
    assert 1.0 <= waited <= 6.0, waited


async def test_a_live_workers_long_task_is_not_redelivered(docket: Docket) -> None:
    register_probes(docket)
    probe = await Probe.start(docket)
    # The task takes 3.5x the redelivery timeout; a second worker stands idle.
    options = {"redelivery_timeout": timedelta(seconds=1), "concurrency": 1, "prefetch": 0}
    async with quick_worker(docket, **options) as busy, quick_worker(docket, **options) as idle:
        runs = [asyncio.create_task(busy.run_forever()), asyncio.create_task(idle.run_forever())]
        await docket.add(worker_process.hold)("long", 3.5)
        await probe.wait_event("done", "long", within=15)
        busy.stop()
        idle.stop()
        async with asyncio.timeout(10):
            await asyncio.gather(*runs)
    # A redelivery would have started it again on the idle worker while it ran.
    assert len(probe.matching("started", "long")) == 1


async def test_a_worker_that_shortens_the_redelivery_timeout_does_not_steal_running_tasks(
    docket: Docket, caplog: pytest.LogCaptureFixture
) -> None:
    """All workers share one consumer, and the last to start sets its ack wait: the
    running worker must renew by the new, shorter one, not by its own."""
    caplog.set_level(logging.INFO, logger="docket_nats")
    register_probes(docket)
    probe = await Probe.start(docket)
    single = {"concurrency": 1, "prefetch": 0}
    async with quick_worker(docket, redelivery_timeout=timedelta(seconds=60), **single) as busy:
        running_busy = asyncio.create_task(busy.run_forever())
        await docket.add(worker_process.hold)("long", 4.0)
        await probe.wait_event("started", "long")
        async with quick_worker(docket, redelivery_timeout=timedelta(seconds=1), **single) as idle:
            running_idle = asyncio.create_task(idle.run_forever())
            await probe.wait_event("done", "long", within=15)
            busy.stop()
            idle.stop()
            async with asyncio.timeout(10):
                await asyncio.gather(running_busy, running_idle)
    assert len(probe.matching("started", "long")) == 1
    assert "redelivery timeout changed from 60s to 1s" in caplog.text


async def test_sigterm_lets_running_tasks_finish_within_the_grace(
    docket: Docket, nats_url: str, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    register_probes(docket)
    probe = await Probe.start(docket)
    # Two slots: one free, so only the stop keeps it from taking more work.
    stopping = await start_process(
        processes, tmp_path, nats_url, docket.name, "--shutdown-grace", "10", "--concurrency", "2"
    )
    await docket.add(worker_process.hold)("short", 1.0)
    await probe.wait_event("started", "short")

    stopping.signal(signal.SIGTERM)
    await stopping.wait_log("stopping: waiting up to", within=10)
    await docket.add(worker_process.note)("not-fetched")  # added during the grace
    assert await stopping.wait_exit(15) == 0
    assert probe.matching("done", "short")[0].pid == stopping.pid
    assert "exits cleanly" in stopping.log_text()
    assert not probe.matching("done", "not-fetched")

    async with quick_worker(docket) as worker:
        async with asyncio.timeout(15):
            await worker.run_until_finished()
    assert probe.matching("done", "not-fetched")[0].pid != stopping.pid
    assert len(probe.matching("started", "short")) == 1


async def test_sigterm_hands_a_task_longer_than_the_grace_to_another_worker_at_once(
    docket: Docket, nats_url: str, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    register_probes(docket)
    probe = await Probe.start(docket)
    # A redelivery timeout far beyond the test: only a hand-back makes it run again.
    stopping = await start_process(
        processes,
        tmp_path,
        nats_url,
        docket.name,
        "--shutdown-grace",
        "0.5",
        "--redelivery-timeout",
        "60",
    )
    await docket.add(worker_process.hold)("too-long", 30)
    await probe.wait_event("started", "too-long")

    async with quick_worker(docket, redelivery_timeout=timedelta(seconds=60)) as other:
        running = asyncio.create_task(other.run_forever())
        signalled_at = time.monotonic()
        stopping.signal(signal.SIGTERM)
        assert await stopping.wait_exit(15) == 0
        second = await probe.wait_event("started", "too-long", count=2, within=10)
        waited = time.monotonic() - signalled_at
        other.stop()
        async with asyncio.timeout(10):
            await running

    assert second.pid != stopping.pid
    assert waited < 5, waited  # the grace (0.5 s) and a hand-back, not 60 s
    assert "did not finish within the grace; handing them back" in stopping.log_text()


async def test_a_poison_message_is_parked_after_max_deliveries(
    docket: Docket,
    nats_url: str,
    tmp_path: Path,
    processes: list[WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_probes(docket)
    probe = await Probe.start(docket)
    await docket.add(worker_process.die, key="poison")("poison")
    await docket.add(worker_process.note)("innocent")

    # Two worker processes in turn: the poison takes each one down.
    for attempt in (1, 2):
        victim = await start_process(
            processes, tmp_path, nats_url, docket.name, "--redelivery-timeout", "1"
        )
        await probe.wait_event("started", "poison", count=attempt)
        assert await victim.wait_exit(10) == 17

    # The next worker parks it on its third delivery instead of running it.
    caplog.set_level(logging.INFO, logger="docket_nats")
    async with quick_worker(docket, redelivery_timeout=timedelta(seconds=1), max_deliveries=2) as w:
        async with asyncio.timeout(15):
            await w.run_until_finished()

    assert len(probe.matching("started", "poison")) == 2
    assert probe.matching("done", "innocent")
    assert "parking task 'poison' as a dead letter: delivered 3 times" in caplog.text
    letters = await docket.dead_letters()
    assert [(letter.key, letter.function) for letter in letters] == [("poison", "die")]
    assert "delivered 3 times" in letters[0].reason
