"""`docket-nats worker --processes N`: N worker processes under one supervisor.

Each child is the worker command itself, `python -m docket_nats worker
--processes 1 --name <name>-<i>` with the options the supervisor was given on
its command line (its environment too, less what only the supervisor does):
an ordinary worker with its own heartbeat, signal handling and graceful stop.
Subprocesses rather than multiprocessing: a child parses, imports and
configures exactly as a worker started by hand (nothing to pickle, no fork of a
process with threads and an event loop), shows in `ps` as what it is, and the
supervisor needs no Worker machinery of its own.

The supervisor (`Pool`) restarts a child that dies, after a delay that doubles
from `RESTART_FIRST` to `RESTART_CAP` and starts over once a child has stayed
up `STAYED_UP`; forwards SIGTERM/SIGINT and kills what is still running
`STOP_MARGIN` after the shutdown grace; and marks each dead child's live
metrics dead in the shared prometheus-client directory. The children watch a
pipe from it (`_supervisor_pipe`), so none outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, cast

import typer
from prometheus_client import multiprocess
from typer.core import TyperOption

from ._supervisor_pipe import SupervisorPipe

logger = logging.getLogger("docket_nats.cli")

RESTART_FIRST = 0.25
RESTART_CAP = 30.0
STAYED_UP = 30.0
# After the grace, a child still cancels its runs, hands their messages back
# and closes its connection: this long, before the supervisor kills it.
STOP_MARGIN = 5.0

# What the supervisor does itself or sets per child: never forwarded as given.
SUPERVISOR_OPTIONS = frozenset({"processes", "name", "metrics_port", "healthcheck_port"})
SUPERVISOR_VARIABLES = frozenset(
    {
        "DOCKET_WORKER_PROCESSES",
        "DOCKET_WORKER_NAME",
        "DOCKET_WORKER_METRICS_PORT",
        "DOCKET_WORKER_HEALTHCHECK_PORT",
    }
)


def cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - Linux has sched_getaffinity


def resolve_processes(processes: int) -> int:
    """`--processes`: 0 means one per core."""
    return processes or cores()


@dataclass
class Backoff:
    """The delays before restarting one child: doubling, capped, and back to the
    first once a child stayed up long enough to count as healthy."""

    first: float = RESTART_FIRST
    cap: float = RESTART_CAP
    stayed_up: float = STAYED_UP
    _next: float | None = None

    def after(self, uptime: float) -> float:
        """The delay before the next start of a child that ran `uptime` seconds."""
        if self._next is None or uptime >= self.stayed_up:
            self._next = self.first
        delay = self._next
        self._next = min(self.cap, delay * 2)
        return delay


def _text(value: object) -> str:
    if isinstance(value, timedelta):
        # The duration syntax (seconds), without an exponent or trailing zeros.
        return format(value.total_seconds(), "f").rstrip("0").rstrip(".")
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def forwarded_arguments(context: typer.Context) -> list[str]:
    """The options given on the command line, as words again, but for the
    supervisor's own: a child reads the rest (environment, defaults) itself."""
    words: list[str] = []
    for parameter in context.command.params:
        name = parameter.name
        if not isinstance(parameter, TyperOption) or name in SUPERVISOR_OPTIONS:
            continue
        source = context.get_parameter_source(name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value: object = context.params[name]
        flag = parameter.opts[0]
        if parameter.is_flag:
            if value:
                words.append(flag)
            elif parameter.secondary_opts:
                words.append(parameter.secondary_opts[0])
        elif parameter.multiple and isinstance(value, list | tuple):
            for each in cast(list[object] | tuple[object, ...], value):
                words += [flag, _text(each)]
        elif value is not None:
            words += [flag, _text(value)]
    return words


@dataclass(frozen=True)
class PoolSettings:
    processes: int
    name: str
    arguments: list[str]
    until_finished: bool
    shutdown_grace: timedelta


class Pool:
    """The supervisor of `settings.processes` worker processes."""

    def __init__(self, settings: PoolSettings, metrics_directory: str | None) -> None:
        """`metrics_directory`: prometheus-client's multi-process directory of the
        children; None (no --metrics-port) leaves them their plain counters, as its
        files cost about 55 us of CPU per task (benchmarks/RESULTS.md)."""
        self.settings = settings
        self.metrics_directory = metrics_directory
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._pipe = SupervisorPipe()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward `signum` to every child, once (safe from a signal handler)."""
        if self._stopping.is_set():
            return
        logger.info("stopping %d worker processes", len(self.children))
        self._signal = signal.Signals(signum)
        self._stopping.set()
        for process in self.children.values():
            _send(process, self._signal)

    async def run(self) -> int:
        """Run until stopped (or, with --until-finished, until every child is
        done); the number of children that had to be killed."""
        slots = [
            asyncio.create_task(self._keep_running(index))
            for index in range(self.settings.processes)
        ]
        stopping = asyncio.create_task(self._stopping.wait())
        everyone = asyncio.gather(*slots)
        first: list[asyncio.Future[Any]] = [stopping, everyone]
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if everyone.done() and everyone.exception() is not None:
                self.stop()  # a failure of the supervisor's own: stop the rest
            _, pending = await asyncio.wait(slots, timeout=self._stop_deadline())
            killed = len(self.children)
            for process in self.children.values():
                logger.warning(
                    "worker process %d did not stop within the grace: killed", process.pid
                )
                _send(process, signal.SIGKILL)
            await asyncio.gather(*pending)
            for slot in slots:
                slot.result()  # a supervisor's own failure is not hidden
            return killed
        finally:
            stopping.cancel()
            if everyone.done() and not everyone.cancelled():
                everyone.exception()  # raised above, from its slot
            for process in self.children.values():  # only on a failure of our own
                _send(process, signal.SIGKILL)
            self._pipe.close()

    def _stop_deadline(self) -> float | None:
        if not self._stopping.is_set():
            return None  # every child finished (--until-finished)
        return self.settings.shutdown_grace.total_seconds() + STOP_MARGIN

    async def _keep_running(self, index: int) -> None:
        """One child, restarted with backoff each time it dies, until the pool stops."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            process = await self._start(index)
            status = await process.wait()
            del self.children[index]
            if self.metrics_directory is not None:
                multiprocess.mark_process_dead(process.pid, self.metrics_directory)  # type: ignore[no-untyped-call]
            if self._stopping.is_set():
                logger.info("worker process %d exited with status %d", process.pid, status)
                return
            if status == 0 and self.settings.until_finished:
                logger.info("worker process %d finished", process.pid)
                return
            delay = backoff.after(loop.time() - started)
            logger.warning(
                "worker process %d (%s) died with status %d; restarting it in %.2fs",
                process.pid, self._child_name(index), status, delay,
            )  # fmt: skip
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    def _child_name(self, index: int) -> str:
        return f"{self.settings.name}-{index}"

    async def _start(self, index: int) -> asyncio.subprocess.Process:
        arguments = [
            *self.settings.arguments,
            *("--processes", "1", "--name", self._child_name(index)),
        ]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "docket_nats", "worker", *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            env=child_environment(os.environ, self.metrics_directory, self._pipe),
            pass_fds=(self._pipe.read_end,),
        )  # fmt: skip
        self.children[index] = process
        logger.info("started worker process %d (%s)", process.pid, self._child_name(index))
        if self._stopping.is_set():  # stopped while this one started
            _send(process, self._signal)
        return process


def child_environment(
    environment: Mapping[str, str], metrics_directory: str | None, pipe: SupervisorPipe
) -> dict[str, str]:
    child = {key: value for key, value in environment.items() if key not in SUPERVISOR_VARIABLES}
    if metrics_directory is not None:
        child["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory
    return child | pipe.environment()


def _send(process: asyncio.subprocess.Process, signum: int) -> None:
    if process.returncode is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:  # exited, not yet reaped
            pass
