"""Perpetual: self-rescheduling tasks, automatic chains, healing, superseding."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docket_nats import CurrentExecution, Docket, Execution, Perpetual, TaskKey, Worker
from docket_nats.worker import _automatic as automatic


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Bounded polling for a condition that has no event of its own."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def stream_messages(docket: Docket) -> int:
    info = await docket.connection.js.stream_info(docket.names.stream)
    return info.state.messages


async def test_a_perpetual_task_runs_again_every_interval(docket: Docket, worker: Worker) -> None:
    runs: list[tuple[datetime, datetime]] = []

    async def tick(
        execution: Execution = CurrentExecution(),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=350)),
    ) -> None:
        runs.append((execution.when, datetime.now(UTC)))

    await docket.add(tick, key="tick")()
    await worker.run_at_most({"tick": 3})
    assert len(runs) == 3
    # Due times follow the cadence exactly (lateness does not accumulate)...
    dues = [due for due, _ in runs]
    assert [later - earlier for earlier, later in itertools.pairwise(dues)] == [
        timedelta(milliseconds=350)
    ] * 2
    # ...and no run starts before it is due.
    assert all(started >= due for due, started in runs)


async def test_a_run_behind_by_more_than_an_interval_restarts_the_cadence(
    docket: Docket, worker: Worker
) -> None:
    runs: list[tuple[datetime, datetime]] = []

    async def slow(
        execution: Execution = CurrentExecution(),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=100)),
    ) -> None:
        runs.append((execution.when, datetime.now(UTC)))
        await asyncio.sleep(0.25)  # longer than the interval

    await docket.add(slow, key="slow")()
    await worker.run_at_most({"slow": 3})
    # No burst of catch-up runs: each run starts after the previous one ended.
    starts = [started for _, started in runs]
    assert all(
        later - earlier >= timedelta(milliseconds=250)
        for earlier, later in itertools.pairwise(starts)
    )


async def test_a_failing_run_is_rescheduled_too(docket: Docket, worker: Worker) -> None:
    runs: list[int] = []

    async def flaky(perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=10))) -> None:
        runs.append(len(runs))
        raise RuntimeError("every time")

    await docket.add(flaky, key="flaky")()
    await worker.run_at_most({"flaky": 3})
    assert runs == [0, 1, 2]


async def test_cancel_ends_the_chain(docket: Docket, worker: Worker) -> None:
    runs: list[int] = []

    async def countdown(perpetual: Perpetual = Perpetual()) -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            perpetual.cancel()

    await docket.add(countdown)()
    await worker.run_until_finished()  # returns: nothing is left once the chain ends
    assert runs == [0, 1, 2]
    assert await stream_messages(docket) == 0


async def test_perpetuate_and_every_steer_the_next_run(docket: Docket, worker: Worker) -> None:
    seen: list[tuple[int, float]] = []

    async def adaptive(
        n: int, perpetual: Perpetual = Perpetual(every=timedelta(seconds=30))
    ) -> None:
        seen.append((n, time.monotonic()))
        perpetual.every = timedelta(milliseconds=50)  # instead of 30 s
        perpetual.perpetuate(n + 1)
        if n == 3:
            perpetual.cancel()

    await docket.add(adaptive)(1)
    started = time.monotonic()
    await worker.run_until_finished()
    assert [n for n, _ in seen] == [1, 2, 3]
    assert time.monotonic() - started < 5


async def test_at_and_after_schedule_the_next_run(docket: Docket, worker: Worker) -> None:
    starts: list[datetime] = []

    async def planned(perpetual: Perpetual = Perpetual(every=timedelta(hours=1))) -> None:
        starts.append(datetime.now(UTC))
        if len(starts) == 1:
            perpetual.at(datetime.now(UTC) + timedelta(milliseconds=300))
        elif len(starts) == 2:
            perpetual.after(timedelta(milliseconds=100))
        else:
            perpetual.cancel()

    await docket.add(planned)()
    await worker.run_until_finished()
    assert len(starts) == 3
    assert starts[1] - starts[0] >= timedelta(milliseconds=295)
    assert starts[2] - starts[1] >= timedelta(milliseconds=95)


async def test_a_replace_while_running_supersedes_the_chain(docket: Docket, worker: Worker) -> None:
    """The reschedule expects the running message to be the key's last: a replace wins."""
    runs: list[str] = []
    release = asyncio.Event()

    async def chain(label: str, perpetual: Perpetual = Perpetual()) -> None:
        runs.append(label)
        if label == "old":
            await release.wait()
        else:
            perpetual.cancel()

    await docket.add(chain, key="chain")("old")
    running = asyncio.create_task(worker.run_until_finished())
    await wait_for(lambda: runs == ["old"])
    await docket.replace(chain, when=datetime.now(UTC), key="chain")("new")
    release.set()
    await running
    # The old run did not reschedule itself over the replacement: one chain.
    assert runs == ["old", "new"]


async def automatic_tick_runs(
    nats_url: str, docket_name: str, task: Callable[..., object], seconds: float
) -> None:
    """Two workers, each with its own connection, running for `seconds`."""
    async with (
        Docket(name=docket_name, url=nats_url) as first,
        Docket(name=docket_name, url=nats_url) as second,
    ):
        first.register(task)  # type: ignore[arg-type]
        second.register(task)  # type: ignore[arg-type]
        async with Worker(first, name="w1") as w1, Worker(second, name="w2") as w2:
            runs = [asyncio.create_task(w1.run_forever()), asyncio.create_task(w2.run_forever())]
            await asyncio.sleep(seconds)  # the measured window itself, not a synchronisation
            w1.stop()
            w2.stop()
            await asyncio.gather(*runs)


async def test_two_workers_give_one_automatic_chain(nats_url: str, docket_name: str) -> None:
    starts: list[tuple[str, float]] = []

    async def heartbeat(
        key: str = TaskKey(),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=200), automatic=True),
    ) -> None:
        starts.append((key, time.monotonic()))

    window = 3.0
    await automatic_tick_runs(nats_url, docket_name, heartbeat, window)
    assert {key for key, _ in starts} == {"heartbeat"}
    # One chain starts every 200 ms (plus scheduling lateness); two chains would
    # give about twice as many runs.
    assert 8 <= len(starts) <= window / 0.2 + 1, len(starts)
    times = sorted(at for _, at in starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.1, gaps  # no two runs of two interleaved chains


async def test_a_severed_automatic_chain_heals(
    docket: Docket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(automatic, "RESEED_INTERVAL", 0.2)
    runs: list[float] = []

    async def janitor(
        perpetual: Perpetual = Perpetual(every=timedelta(seconds=1), automatic=True),
    ) -> None:
        runs.append(time.monotonic())

    docket.register(janitor)
    async with Worker(docket) as worker:
        running = asyncio.create_task(worker.run_forever())
        await wait_for(lambda: len(runs) == 1)
        # Sever the chain: its next run disappears (as if parked or lost).
        await docket.cancel("janitor")
        severed = time.monotonic()
        await wait_for(lambda: len(runs) == 2, within=5)
        worker.stop()
        await running
    # It came back at the next reseed pass, not after the 1 s interval's worth of luck.
    assert runs[1] - severed < 0.9


async def test_a_perpetual_keeps_its_cadence_after_its_worker_is_killed(
    nats_url: str, docket_name: str, tmp_path: Path
) -> None:
    """SIGKILL the worker process; another worker carries the same chain on."""
    marks = tmp_path / "runs.txt"
    script = tmp_path / "victim.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, time
            from datetime import timedelta
            from docket_nats import CurrentExecution, Docket, Execution, Perpetual, TaskKey, Worker

            async def pulse(key: str = TaskKey(),
                            perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=200))):
                with open({str(marks)!r}, "a") as f:
                    f.write(f"victim {{time.time()}}\\n")
                await asyncio.sleep(0.1)

            async def main():
                async with Docket(name={docket_name!r}, url={nats_url!r}) as docket:
                    await docket.add(pulse, key="pulse")()
                    async with Worker(docket, redelivery_timeout=timedelta(seconds=1)) as worker:
                        await worker.run_forever()

            asyncio.run(main())
            """
        )
    )
    victim = await asyncio.create_subprocess_exec(sys.executable, str(script), cwd=tmp_path)
    try:
        await wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 3, 20)
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    killed = time.time()

    async def pulse(
        key: str = TaskKey(),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=200)),
    ) -> None:
        with marks.open("a") as f:
            f.write(f"survivor {time.time()}\n")

    async with Docket(name=docket_name, url=nats_url) as docket:
        docket.register(pulse)
        async with Worker(docket, redelivery_timeout=timedelta(seconds=1)) as worker:
            await worker.run_at_most({"pulse": 5})
    survivors = [
        float(line.split()[1])
        for line in marks.read_text().splitlines()
        if line.startswith("survivor")
    ]
    assert len(survivors) == 5
    # Killed between runs, the next schedule was already on the server; killed
    # mid-run, the message comes back after the redelivery timeout (1 s).
    assert survivors[0] - killed < 2.5
    gaps = [later - earlier for earlier, later in itertools.pairwise(survivors)]
    assert all(0.1 <= gap < 0.6 for gap in gaps), gaps


async def test_ensuring_a_live_chain_is_one_refused_round_trip(
    docket: Docket, worker: Worker
) -> None:
    """What every worker's reseed pass costs for a healthy chain."""
    from docket_nats import Disposition

    async def steady(
        perpetual: Perpetual = Perpetual(every=timedelta(seconds=30), automatic=True),
    ) -> None: ...

    seeder = automatic.AutomaticTasks(docket)
    docket.register(steady)
    first = await docket.add(steady, key="steady")()
    assert first.disposition is Disposition.SCHEDULED
    started = time.monotonic()
    await seeder.seed()
    again = await docket.add(steady, key="steady")()
    assert again.disposition is Disposition.ALREADY_SCHEDULED
    assert time.monotonic() - started < 0.5  # refused at once, not timed out
    assert await stream_messages(docket) == 1


async def test_retries_come_before_the_next_perpetual_run(docket: Docket, worker: Worker) -> None:
    from docket_nats import Retry

    attempts: list[int] = []

    async def stubborn(
        retry: Retry = Retry(attempts=2),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=10)),
    ) -> None:
        attempts.append(retry.attempt)
        raise RuntimeError("always")

    await docket.add(stubborn, key="stubborn")()
    await worker.run_at_most({"stubborn": 4})
    # Each run is retried once; once the retries are spent, the chain goes on.
    assert attempts == [1, 2, 1, 2]
