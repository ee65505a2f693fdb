"""A worker in a process of its own, for tests that kill or signal it.

Run as a script (`python tests/worker_process.py --url ... --docket ...`), it
registers the probe tasks below, prints READY once its worker is running, and
stops gracefully on SIGTERM. Imported by a test, it gives the same tasks (so an
in-process worker can take over a task a killed process held), `spawn()` to
start such a process and `Probe` to follow what the tasks report.

The tasks report over core NATS on `probe.<docket>` (one JSON object per event:
what happened, the label, the pid), so a test awaits events instead of sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from docket_nats import CurrentDocket, Docket, MemberOutcome, Worker, _groups

READY = "READY"


def probe_subject(docket_name: str) -> str:
    return f"probe.{docket_name}"


async def report(docket: Docket, event: str, label: str) -> None:
    payload = {"event": event, "label": label, "pid": os.getpid()}
    await docket.connection.nc.publish(probe_subject(docket.name), json.dumps(payload).encode())
    await docket.connection.nc.flush()


async def hold(label: str, seconds: float, docket: Docket = CurrentDocket()) -> None:
    """A task that takes `seconds`, reporting when it starts and ends."""
    await report(docket, "started", label)
    await asyncio.sleep(seconds)
    await report(docket, "done", label)


async def block(label: str, seconds: float, blocker: int, docket: Docket = CurrentDocket()) -> None:
    """A task that blocks its event loop for `seconds` (no await), in process
    `blocker` only; anywhere else it is quick. Then one await, where a
    cancellation (a fence) would land, and a report that it ended."""
    await report(docket, "started", label)
    if os.getpid() == blocker:
        time.sleep(seconds)  # noqa: ASYNC251  (the mistake under test: a blocked loop)
    await asyncio.sleep(0.1)
    await report(docket, "done", label)


async def note(label: str, docket: Docket = CurrentDocket()) -> None:
    """A quick task: reports that it ran."""
    await report(docket, "done", label)


async def die(label: str, docket: Docket = CurrentDocket()) -> None:
    """A poison task: takes its worker process down with it, every time."""
    await report(docket, "started", label)
    os._exit(17)


async def settle(log: str, outcomes: list[MemberOutcome], docket: Docket = CurrentDocket()) -> None:
    """A group callback that writes to a file outside any worker: a line when it
    starts, and one with the outcomes' states when it ends. Its first run holds
    (for the test to kill its worker); a later one goes straight on."""
    if append_line(log, f"start {os.getpid()}").count("start") == 1:
        await report(docket, "started", "settle")
        await asyncio.sleep(60)
    states = ",".join(outcome.state.value for outcome in outcomes)
    append_line(log, f"done {len(outcomes)} {states}")
    await report(docket, "done", "settle")


async def quick_settle(log: str, outcomes: list[MemberOutcome]) -> None:
    """A group callback that only writes a line with the outcomes' keys."""
    append_line(log, f"done {','.join(outcome.key for outcome in outcomes)}")


def append_line(log: str, line: str) -> str:
    """Append a line to a small local file (a blocking write of microseconds);
    the file's text after it."""
    path = Path(log)
    with path.open("a") as file:
        file.write(line + "\n")
    return path.read_text()


tasks = [hold, note, die, settle, quick_settle, block]


def exit_after_publishing_a_callback() -> None:
    """Make this process die (as with kill -9: no ack, no clean-up) right after it
    publishes a group's callback, before it acks the member that completed it."""
    publish = _groups.publish_then

    async def publish_then_die(*args: Any) -> None:
        await publish(*args)
        os._exit(9)

    _groups.publish_then = publish_then_die


# -- the test side -------------------------------------------------------------


async def wait_until(
    changed: asyncio.Event, condition: Callable[[], bool], within: float, what: str, seen: object
) -> None:
    """Wait (at most `within` s) until `condition()` holds, re-checking each time
    `changed` is set; on timeout, fail naming `what` and what was `seen`."""
    try:
        async with asyncio.timeout(within):
            while not condition():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"waited {within}s in vain for {what}; events: {seen}") from None


@dataclass(frozen=True)
class Event:
    event: str
    label: str
    pid: int


@dataclass
class Probe:
    """Collects the events the probe tasks of one docket report."""

    events: list[Event] = field(default_factory=list[Event])
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, docket: Docket) -> Probe:
        probe = cls()

        async def on_event(message: Msg) -> None:
            probe.events.append(Event(**json.loads(message.data)))
            probe._changed.set()

        await docket.connection.nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            probe_subject(docket.name), cb=on_event
        )
        await docket.connection.nc.flush()
        return probe

    def matching(self, event: str, label: str) -> list[Event]:
        return [each for each in self.events if each.event == event and each.label == label]

    async def wait_for(
        self, condition: Callable[[], bool], within: float, what: str = "condition"
    ) -> None:
        await wait_until(self._changed, condition, within, what, self.events)

    async def wait_event(self, event: str, label: str, count: int = 1, within: float = 15) -> Event:
        """The `count`-th such event, once it has happened (at most `within` seconds)."""
        await self.wait_for(
            lambda: len(self.matching(event, label)) >= count, within, f"{count}x {event} {label}"
        )
        return self.matching(event, label)[count - 1]


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_log(self, text: str, within: float) -> None:
        """Until the process has logged `text` (polled: a log file sends no events)."""
        async with asyncio.timeout(within):
            while text not in self.log_text():  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    async def wait_exit(self, within: float) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def spawn(log: Path, url: str, docket_name: str, *options: str) -> WorkerProcess:
    """Start a worker process and wait until it says it runs (bounded)."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--url",
            url,
            "--docket",
            docket_name,
            *options,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            stdin=asyncio.subprocess.DEVNULL,
        )
    worker = WorkerProcess(process, log)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            while (line := await process.stdout.readline()) and line.strip() != READY.encode():
                pass
    except TimeoutError:
        await worker.kill()
        raise AssertionError(f"worker process did not start:\n{worker.log_text()}") from None
    if process.returncode is not None or not line:
        raise AssertionError(f"worker process exited at start:\n{worker.log_text()}")
    return worker


# -- the process side ----------------------------------------------------------


async def serve(arguments: argparse.Namespace) -> None:
    connect_options: dict[str, Any] = json.loads(arguments.connect_options)
    async with Docket(
        name=arguments.docket, url=arguments.url, connect_options=connect_options
    ) as docket:
        for function in tasks:
            docket.register(function)
        options: dict[str, Any] = {}
        if arguments.exit_after_publishing_a_callback:
            exit_after_publishing_a_callback()
        if arguments.max_deliveries is not None:
            options["max_deliveries"] = arguments.max_deliveries
        async with Worker(
            docket,
            concurrency=arguments.concurrency,
            prefetch=0,
            redelivery_timeout=timedelta(seconds=arguments.redelivery_timeout),
            shutdown_grace=timedelta(seconds=arguments.shutdown_grace),
            schedule_automatic_tasks=False,
            **options,
        ) as worker:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            running = asyncio.create_task(worker.run_forever())
            await asyncio.sleep(0)  # let it start its actors before saying so
            print(READY, flush=True)
            await running
    logging.getLogger("worker_process").info("worker process %d exits cleanly", os.getpid())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--docket", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--redelivery-timeout", type=float, default=2.0)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument("--max-deliveries", type=int, default=None)
    parser.add_argument("--exit-after-publishing-a-callback", action="store_true")
    parser.add_argument("--connect-options", default="{}", help="Docket(connect_options=...), JSON")
    arguments = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    main()
