"""Flow control across worker processes: ConcurrencyLimit, Debounce, Cooldown, RateLimit.

The tasks run in separate worker processes (this file is also their script:
`python tests/test_flow_control.py --url ... --docket ...`) and report each start
and end over core NATS with a timestamp, so the tests see what every process did,
in the order the server relayed it (a run starts only after the slot it takes was
released, and the release is sent after the holder's report, on one connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pytest
from nats.aio.msg import Msg

from docket_nats import (
    ConcurrencyLimit,
    Cooldown,
    CurrentDocket,
    Debounce,
    Docket,
    ExecutionState,
    Perpetual,
    RateLimit,
    Worker,
)
from docket_nats.dependencies._concurrency import ConcurrencyBlocked

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: worker_process
from worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.timeout(60)

READY = "READY"
DEBOUNCE = timedelta(milliseconds=700)
COOLDOWN = timedelta(milliseconds=800)
RATE, RATE_WINDOW = 3, timedelta(seconds=1)


# -- the tasks (registered by the worker processes and the in-process workers) ----


async def report(docket: Docket, event: str, label: str, group: str = "") -> None:
    payload = {"event": event, "label": label, "group": group, "pid": os.getpid(), "t": time.time()}
    await docket.connection.nc.publish(f"probe.{docket.name}", json.dumps(payload).encode())
    await docket.connection.nc.flush()


async def per_customer(
    customer: int,
    label: str,
    seconds: float,
    limit: ConcurrencyLimit = ConcurrencyLimit("customer", max_concurrent=2),
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "started", label, f"customer-{customer}")
    await asyncio.sleep(seconds)
    await report(docket, "done", label, f"customer-{customer}")


async def per_region(
    region: Annotated[str, ConcurrencyLimit(1)],
    label: str,
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "started", label, region)
    await asyncio.sleep(0.05)
    await report(docket, "done", label, region)


async def holds_in(
    customer: int,
    label: str,
    seconds: float,
    holder_pid: int,
    limit: ConcurrencyLimit = ConcurrencyLimit("customer", max_concurrent=1),
    docket: Docket = CurrentDocket(),
) -> None:
    """Holds its slot for `seconds` in the process `holder_pid`, briefly elsewhere."""
    await report(docket, "started", label, f"customer-{customer}")
    await asyncio.sleep(seconds if os.getpid() == holder_pid else 0.05)
    await report(docket, "done", label, f"customer-{customer}")


async def debounced(
    label: str,
    debounce: Debounce = Debounce(DEBOUNCE),
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "done", label)


async def cooled(
    account: Annotated[int, Cooldown(COOLDOWN)],
    label: str,
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "done", label, f"account-{account}")


async def rate_limited(
    label: str,
    rate: RateLimit = RateLimit(RATE, per=RATE_WINDOW),
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "done", label)


async def rate_limited_drop(
    label: str,
    rate: RateLimit = RateLimit(RATE, per=RATE_WINDOW, drop=True),
    docket: Docket = CurrentDocket(),
) -> None:
    await report(docket, "done", label)


tasks = [
    per_customer,
    per_region,
    holds_in,
    debounced,
    cooled,
    rate_limited,
    rate_limited_drop,
]


# -- the test side -------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    event: str
    label: str
    group: str
    pid: int
    t: float


@dataclass
class Probe:
    events: list[Event] = field(default_factory=list[Event])
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, event: str, label: str | None = None) -> list[Event]:
        return [e for e in self.events if e.event == event and label in (None, e.label)]

    async def until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        await wait_until(self.changed, condition, within, what, self.events)


@pytest.fixture
async def probe(docket: Docket) -> Probe:
    probe = Probe()

    async def on_event(message: Msg) -> None:
        probe.events.append(Event(**json.loads(message.data)))
        probe.changed.set()

    await docket.connection.nc.subscribe(f"probe.{docket.name}", cb=on_event)  # pyright: ignore[reportUnknownMemberType]
    await docket.connection.nc.flush()
    return probe


async def spawn(log: Path, url: str, docket_name: str, concurrency: int) -> WorkerProcess:
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--url",
            url,
            "--docket",
            docket_name,
            "--concurrency",
            str(concurrency),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            stdin=asyncio.subprocess.DEVNULL,
        )
    worker = WorkerProcess(process, log)
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while (line := await process.stdout.readline()) and line.strip() != READY.encode():
            pass
    assert process.returncode is None, worker.log_text()
    return worker


@pytest.fixture
async def workers(
    nats_url: str, docket: Docket, tmp_path: Path
) -> AsyncIterator[list[WorkerProcess]]:
    """Three worker processes on the test's docket, four runs at once each."""
    started = await asyncio.gather(
        *(spawn(tmp_path / f"worker-{i}.log", nats_url, docket.name, 4) for i in range(3))
    )
    yield list(started)
    for each in started:
        each.signal(signal.SIGTERM)
    for each in started:
        try:
            await each.wait_exit(10)
        except TimeoutError:
            await each.kill()


def most_at_once(events: list[Event], group: str) -> int:
    """The most runs of `group` between their started and done reports at once."""
    running = most = 0
    for event in events:
        if event.group != group:
            continue
        running += 1 if event.event == "started" else -1
        most = max(most, running)
    return most


def register(docket: Docket) -> None:
    for function in tasks:
        docket.register(function)


async def test_concurrency_limit_holds_across_worker_processes(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    runs = [(customer, f"c{customer}-{n}") for customer in range(3) for n in range(8)]
    for customer, label in runs:
        await docket.add(per_customer)(customer, label, 0.15)

    await probe.until(lambda: len(probe.of("done")) >= len(runs), 30, "every run to finish")

    for customer in range(3):
        # 12 run slots across the processes, but never more than 2 per customer...
        assert most_at_once(probe.events, f"customer-{customer}") == 2
    # ...and every run ran exactly once, spread over the processes.
    assert sorted(e.label for e in probe.of("done")) == sorted(label for _, label in runs)
    assert len({e.pid for e in probe.of("started")}) > 1
    # Timestamps agree: no third run of a customer started while two were running.
    for customer in range(3):
        spans = [
            (start.t, next(d.t for d in probe.of("done", start.label)))
            for start in probe.of("started")
            if start.group == f"customer-{customer}"
        ]
        for begin, _ in spans:
            overlapping = [1 for b, e in spans if b <= begin < e]
            assert len(overlapping) <= 2


async def test_annotated_limit_per_value(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    labels = [f"{region}-{n}" for region in ("eu", "us") for n in range(6)]
    for label in labels:
        await docket.add(per_region)(label.split("-")[0], label)

    await probe.until(lambda: len(probe.of("done")) >= len(labels), 30, "every run")

    assert most_at_once(probe.events, "eu") == 1
    assert most_at_once(probe.events, "us") == 1
    assert sorted(e.label for e in probe.of("done")) == sorted(labels)


async def test_a_killed_holders_slot_comes_back(
    nats_url: str, docket: Docket, probe: Probe, tmp_path: Path
) -> None:
    register(docket)
    holder = await spawn(tmp_path / "holder.log", nats_url, docket.name, 2)
    try:
        await docket.add(holds_in, key="A")(7, "A", 60.0, holder.pid)
        await probe.until(lambda: bool(probe.of("started", "A")), 15, "A to start")
        await docket.add(holds_in, key="B")(7, "B", 0.05, holder.pid)
        # B waits (rescheduled) while A holds the only slot of customer 7.
        await asyncio.sleep(1.0)
        assert not probe.of("started", "B")
        B = await docket.get_execution("B")
        assert B is not None and B.state is not ExecutionState.CANCELLED
    finally:
        await holder.kill()  # SIGKILL: A's slot is never released, its lease runs out
    killed_at = time.time()

    async with Worker(
        docket,
        redelivery_timeout=timedelta(seconds=2),
        minimum_check_interval=timedelta(milliseconds=20),
    ) as worker:
        runner = asyncio.create_task(worker.run_forever())
        try:
            await probe.until(
                lambda: bool(probe.of("done", "B")) and len(probe.of("done", "A")) == 1,
                20,
                "B to run and A to be redelivered",
            )
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    b_started = probe.of("started", "B")[0].t
    # The slot came back with the lease (2 s at this redelivery timeout, TTLs tick
    # in whole seconds), not later...
    assert b_started - killed_at < 6.0
    # ...and A (redelivered) and B still never ran at once (the killed run never ended).
    assert most_at_once([e for e in probe.events if e.pid != holder.pid], "customer-7") == 1


async def test_debounce_runs_once_after_the_burst_settles(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    first_at = time.time()
    last_at = first_at
    for n in range(5):  # a burst, 100 ms apart: shorter than the settle window
        last_at = time.time()
        await docket.add(debounced, key=f"d{n}")(f"d{n}")
        await asyncio.sleep(0.1)

    await probe.until(lambda: bool(probe.of("done")), 15, "the debounced run")
    # Nothing else comes (the other four were dropped, recorded as cancelled).
    await asyncio.sleep(DEBOUNCE.total_seconds() * 2)
    done = probe.of("done")
    assert [e.label for e in done] == ["d0"]  # the first is the one that waits and runs
    assert done[0].t - last_at >= DEBOUNCE.total_seconds() - 0.05
    assert done[0].t - first_at < DEBOUNCE.total_seconds() + 0.5 + 3.0
    for n in range(1, 5):
        dropped = await docket.get_execution(f"d{n}")
        assert dropped is not None and dropped.state is ExecutionState.CANCELLED

    # After it ran, a new submission starts a new window.
    await docket.add(debounced, key="later")("later")
    await probe.until(lambda: bool(probe.of("done", "later")), 10, "the next window's run")


async def test_cooldown_runs_the_first_and_drops_the_rest_of_the_window(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    for n in range(4):
        await docket.add(cooled, key=f"a{n}")(1, f"a{n}")
    await docket.add(cooled, key="other")(2, "other")  # another account: its own window
    await probe.until(lambda: len(probe.of("done")) >= 2, 10, "one run per account")
    first = next(e for e in probe.of("done") if e.group == "account-1")

    # The three duplicates are dropped (cancelled), not run later.
    async def all_settled() -> bool:
        for n in range(4):
            execution = await docket.get_execution(f"a{n}")
            if execution is None or execution.state not in (
                ExecutionState.COMPLETED,
                ExecutionState.CANCELLED,
            ):
                return False
        return True

    async with asyncio.timeout(10):
        while not await all_settled():  # noqa: ASYNC110  (no event for a dropped run)
            await asyncio.sleep(0.05)
    assert sorted(e.group for e in probe.of("done")) == ["account-1", "account-2"]

    # Once the window has passed, the next one runs.
    await asyncio.sleep(max(0.0, first.t + COOLDOWN.total_seconds() - time.time()) + 0.05)
    await docket.add(cooled, key="after")(1, "after")
    await probe.until(lambda: bool(probe.of("done", "after")), 10, "the run after the window")
    assert probe.of("done", "after")[0].t - first.t >= COOLDOWN.total_seconds()


async def test_rate_limit_spreads_runs_over_windows_and_loses_none(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    labels = [f"r{n}" for n in range(9)]
    for label in labels:
        await docket.add(rate_limited)(label)

    await probe.until(lambda: len(probe.of("done")) >= len(labels), 20, "every rate-limited run")

    times = sorted(e.t for e in probe.of("done"))
    assert sorted(e.label for e in probe.of("done")) == labels  # rescheduled, none lost
    window = RATE_WINDOW.total_seconds()
    for index, started in enumerate(times):
        # Never more than RATE runs within any window (slack: the reports come a
        # moment after admission, and not always equally late).
        within = [t for t in times[index:] if t < started + window - 0.1]
        assert len(within) <= RATE
    assert times[-1] - times[0] >= 2 * window - 0.1  # 9 runs at 3 per second


async def test_rate_limit_with_drop_drops_the_excess(
    docket: Docket, probe: Probe, workers: list[WorkerProcess]
) -> None:
    register(docket)
    for n in range(6):
        await docket.add(rate_limited_drop, key=f"x{n}")(f"x{n}")

    async def settled() -> list[ExecutionState]:
        states: list[ExecutionState] = []
        for n in range(6):
            execution = await docket.get_execution(f"x{n}")
            states.append(execution.state if execution else ExecutionState.SCHEDULED)
        return states

    async def all_settled() -> bool:
        done = (ExecutionState.COMPLETED, ExecutionState.CANCELLED)
        return all(state in done for state in await settled())

    async with asyncio.timeout(10):
        while not await all_settled():  # noqa: ASYNC110  (no event for a dropped run)
            await asyncio.sleep(0.05)
    states = await settled()
    assert states.count(ExecutionState.COMPLETED) == RATE
    assert states.count(ExecutionState.CANCELLED) == 6 - RATE
    assert len(probe.of("done")) == RATE


async def test_blocked_run_is_rescheduled_not_failed(docket: Docket, worker: Worker) -> None:
    """In process: a blocked run keeps its attempt and key, and cancel still reaches it."""
    holding = asyncio.Event()
    release = asyncio.Event()

    async def slow(limit: ConcurrencyLimit = ConcurrencyLimit(max_concurrent=1)) -> None:
        assert limit.concurrency_key.startswith("concurrency.")
        holding.set()
        await release.wait()

    docket.register(slow)
    await docket.add(slow, key="one")()
    await docket.add(slow, key="two")()
    runner = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.wait_for(holding.wait(), 10)
        await asyncio.sleep(0.5)
        two = await docket.get_execution("two")
        one = await docket.get_execution("one")
        assert one is not None and one.state is ExecutionState.RUNNING
        # "two" waits in the work stream: scheduled or queued, never failed.
        assert two is not None and two.state in (ExecutionState.SCHEDULED, ExecutionState.QUEUED)
        assert two.attempt == 1
        await docket.cancel("two")
        release.set()
        one_done = await docket.get_execution("one")
        assert one_done is not None
        await asyncio.wait_for(one_done.get_result(), 10)
        await asyncio.sleep(0.3)
        two = await docket.get_execution("two")
        assert two is not None and two.state is ExecutionState.CANCELLED
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_perpetual_chain_waits_for_the_limit_and_goes_on(
    docket: Docket, worker: Worker
) -> None:
    """Limits on the same argument name and value are shared across tasks (as in
    docket); a blocked perpetual run is rescheduled, and its chain is not broken."""
    holding, release = asyncio.Event(), asyncio.Event()
    ticks: list[float] = []
    released_at: list[float] = []

    async def blocker(
        customer: int, limit: ConcurrencyLimit = ConcurrencyLimit("customer", 1)
    ) -> None:
        holding.set()
        await release.wait()
        released_at.append(time.monotonic())

    async def tick(
        customer: int,
        limit: ConcurrencyLimit = ConcurrencyLimit("customer", 1),
        perpetual: Perpetual = Perpetual(every=timedelta(milliseconds=50)),
    ) -> None:
        ticks.append(time.monotonic())

    docket.register(blocker)
    docket.register(tick)
    await docket.add(blocker, key="blocker")(5)
    runner = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.wait_for(holding.wait(), 10)
        await docket.add(tick, key="tick")(5)
        await asyncio.sleep(0.5)
        assert ticks == []  # blocked the whole time the blocker held customer 5
        release.set()
        async with asyncio.timeout(10):
            while len(ticks) < 3:  # noqa: ASYNC110  (no event for a perpetual's runs)
                await asyncio.sleep(0.02)
        assert ticks[0] >= released_at[0]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await docket.cancel("tick")


def test_signatures_match_docket() -> None:
    assert ConcurrencyLimit(3).max_concurrent == 3
    assert ConcurrencyLimit(3).argument_name is None
    limit = ConcurrencyLimit("customer_id", 2, scope="s")
    assert (limit.argument_name, limit.max_concurrent, limit.scope) == ("customer_id", 2, "s")
    assert ConcurrencyLimit(max_concurrent=4).max_concurrent == 4
    assert ConcurrencyLimit().max_concurrent == 1
    bound = ConcurrencyLimit(2).bind_to_parameter("region", "eu")
    assert bound.argument_name == "region"
    assert issubclass(ConcurrencyBlocked, Exception)
    assert RateLimit(5, per=timedelta(seconds=1)).drop is False
    with pytest.raises(RuntimeError):
        _ = ConcurrencyLimit(1).concurrency_key


# -- the process side ----------------------------------------------------------


async def serve(arguments: argparse.Namespace) -> None:
    async with Docket(name=arguments.docket, url=arguments.url) as docket:
        register(docket)
        async with Worker(
            docket,
            concurrency=arguments.concurrency,
            redelivery_timeout=timedelta(seconds=2),
            minimum_check_interval=timedelta(milliseconds=20),
            schedule_automatic_tasks=False,
        ) as worker:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            running = asyncio.create_task(worker.run_forever())
            await asyncio.sleep(0)
            print(READY, flush=True)
            await running


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--docket", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    asyncio.run(serve(parser.parse_args()))
