"""`docket-nats worker --processes N`: a supervisor and its worker processes,
all real processes on a real nats-server, the tasks reporting over NATS
(`worker_process.Probe`) with the pid that ran them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from http_probe import http_get
from pool_tasks import stall
from test_metrics import eventually, parse, scrape
from worker_process import Probe, hold

from docket_nats import Docket, Worker
from docket_nats._embedded import free_port
from docket_nats.cli._pool import Backoff, resolve_processes

HERE = Path(__file__).resolve().parent


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # After "(comm)": state, ppid, ...
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid and fields[0] not in "ZX":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (not exited, not a zombie nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_text().split("\0")[:-1]
    return dict(entry.split("=", 1) for entry in entries)


@dataclass
class Supervisor:
    process: asyncio.subprocess.Process
    log: Path
    seen: set[int] = field(default_factory=set[int])  # every child it was seen with

    @property
    def pid(self) -> int:
        return self.process.pid

    async def children(
        self, count: int, *, other_than: set[int] = frozenset(), within: float = 20
    ) -> set[int]:
        """Its `count` worker processes, once there are that many and none of
        `other_than` (polled: no event says a process started)."""
        async with asyncio.timeout(within):
            while True:
                pids = children_of(self.pid)
                self.seen |= pids
                if len(pids) == count and not pids & other_than:
                    return pids
                await asyncio.sleep(0.05)


@asynccontextmanager
async def pool(
    nats_url: str,
    docket_name: str,
    tmp_path: Path,
    *options: str,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Supervisor]:
    """`docket-nats worker --processes 2` with `pool_tasks`; at the end, if
    a test left it running, it and its children are killed."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
    )
    log = tmp_path / "pool.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "docket_nats", "worker",
            "--url", nats_url, "--docket", docket_name,
            "--tasks", "pool_tasks:tasks", "--processes", "2",
            "--redelivery-timeout", "2", "--shutdown-grace", "1",
            "--logging-format", "plain", "--http-host", "127.0.0.1",
            *options,
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
            env=environment | (env or {}),
        )  # fmt: skip
    supervisor = Supervisor(process, log)
    try:
        yield supervisor
    finally:
        if process.returncode is None:
            supervisor.seen |= children_of(process.pid)
            process.kill()
        await process.wait()
        for pid in supervisor.seen:  # a failed test leaves no process behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def heartbeats(docket: Docket, names: int) -> set[str]:
    """The worker names in the docket's workers bucket, once there are `names`."""
    async with asyncio.timeout(20):
        # A KV read: nothing to await but the next poll.
        while len(found := {worker.name for worker in await docket.workers()}) != names:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return found


async def test_a_pool_of_two_survives_kill_9_of_a_child(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    probe = await Probe.start(docket)
    async with pool(nats_url, docket.name, tmp_path, "--name", "pool") as supervisor:
        first = await supervisor.children(2)
        assert await heartbeats(docket, 2) == {"pool-0", "pool-1"}
        for pid in first:  # no --metrics-port: no multi-process metrics to pay for
            assert "PROMETHEUS_MULTIPROC_DIR" not in environment_of(pid)
        labels = [f"t{i}" for i in range(6)]
        for label in labels:
            await docket.add(hold, key=label)(label, 1.0)
        victim = (await probe.wait_event("started", labels[0])).pid
        assert victim in first
        os.kill(victim, signal.SIGKILL)

        replaced = await supervisor.children(2, other_than={victim})
        assert replaced - first, "a new process took the dead one's place"
        for label in labels:  # nothing lost: every key ran to completion
            await probe.wait_event("done", label, within=20)
        assert "died with status -9; restarting it in 0.25s" in supervisor.log.read_text()
        # What the dead one held was redelivered and run by a live process.
        held = {event.label for event in probe.events if event.pid == victim}
        assert labels[0] in held
        for label in held:
            assert any(event.pid != victim for event in probe.matching("done", label))
        assert not [
            event for event in probe.events if event.event == "done" and event.pid == victim
        ]


async def test_sigterm_stops_the_pool_cleanly_and_one_port_serves_the_sum(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    probe = await Probe.start(docket)
    port, health = free_port(), free_port()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    async with pool(
        nats_url, docket.name, tmp_path, "--concurrency", "1",
        "--metrics-port", str(port), "--healthcheck-port", str(health),
        # Were the variables passed on, each child would fail on the pool's ports.
        env={
            "TMPDIR": str(temporary),
            "DOCKET_WORKER_METRICS_PORT": str(port),
            "DOCKET_WORKER_HEALTHCHECK_PORT": str(health),
        },
    ) as supervisor:  # fmt: skip
        children = await supervisor.children(2)
        await heartbeats(docket, 2)
        assert await http_get(health) == (200, "OK")
        for pid in children:
            words = command_line(pid)
            assert words[words.index("--processes") + 1] == "1"
            assert words[words.index("--concurrency") + 1] == "1"
            assert words[words.index("--shutdown-grace") + 1] == "1"
            assert "--metrics-port" not in words  # the pool's port is the supervisor's
            summed = environment_of(pid)["PROMETHEUS_MULTIPROC_DIR"]
            assert Path(summed).parent == temporary
        # One run slot and one prefetched message each: both take some.
        labels = [f"m{i}" for i in range(8)]
        for label in labels:
            await docket.add(hold, key=label)(label, 0.2)
        for label in labels:
            await probe.wait_event("done", label)
        assert {event.pid for event in probe.events} == children

        task = frozenset({("docket", docket.name), ("task", "hold")})

        async def summed() -> bool:
            return parse((await scrape(port))[1]).get(("docket_tasks_succeeded_total", task)) == 8

        await eventually(summed)
        samples = parse((await scrape(port))[1])
        assert samples[("docket_tasks_started_total", task)] == 8
        assert samples[("docket_tasks_running", task)] == 0

        # A task running at SIGTERM finishes within the grace; then all exit.
        await docket.add(hold, key="last")("last", 0.3)
        await probe.wait_event("started", "last")
        supervisor.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(supervisor.process.wait(), timeout=15) == 0
        await probe.wait_event("done", "last")
        assert not [pid for pid in children if alive(pid)]
        assert await docket.workers() == []  # each removed its heartbeat
        assert list(temporary.iterdir()) == []  # the metrics directory is removed


async def test_kill_9_of_the_supervisor_leaves_no_worker_process(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    probe = await Probe.start(docket)
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}  # left alone: not the pool's own
    options = ("--redelivery-timeout", "4", "--shutdown-grace", "0.5")
    async with pool(nats_url, docket.name, tmp_path, *options, env=shared) as supervisor:
        children = await supervisor.children(2)
        await heartbeats(docket, 2)
        await docket.add(hold, key="held")("held", 1.5)
        started = await probe.wait_event("started", "held")
        supervisor.process.kill()
        await supervisor.process.wait()
        async with asyncio.timeout(4):  # the redelivery timeout
            while [pid for pid in children if alive(pid)]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    # The task its process gave back runs again elsewhere, to completion.
    docket.register_collection("pool_tasks:tasks")
    async with Worker(docket, redelivery_timeout=timedelta(seconds=2)) as worker:
        await worker.run_until_finished()
    done = probe.matching("done", "held")
    assert [event.pid for event in done] == [os.getpid()]
    assert started.pid in children


async def test_a_child_that_outlasts_the_grace_is_killed_and_the_stop_is_not_clean(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    probe = await Probe.start(docket)
    async with pool(nats_url, docket.name, tmp_path, "--shutdown-grace", "0.5") as supervisor:
        children = await supervisor.children(2)
        await heartbeats(docket, 2)
        await docket.add(stall, key="stuck")("stuck")
        stuck = (await probe.wait_event("started", "stuck")).pid
        supervisor.process.send_signal(signal.SIGTERM)
        # The grace, then STOP_MARGIN (5 s), then the kill.
        assert await asyncio.wait_for(supervisor.process.wait(), timeout=15) == 1
        log = supervisor.log.read_text()
        assert f"worker process {stuck} did not stop within the grace: killed" in log
        assert "1 worker process(es) did not stop within the shutdown grace" in log
        (other,) = children - {stuck}
        assert f"worker process {other} exited with status 0" in log
        assert not [pid for pid in children if alive(pid)]


async def test_until_finished_pool_exits_once_the_docket_is_empty(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    probe = await Probe.start(docket)
    for index in range(4):
        await docket.add(hold, key=f"u{index}")(f"u{index}", 0.1)
    async with pool(nats_url, docket.name, tmp_path, "--until-finished") as supervisor:
        assert await asyncio.wait_for(supervisor.process.wait(), timeout=30) == 0
    for index in range(4):
        await probe.wait_event("done", f"u{index}")
    assert len(re.findall(r"worker process \d+ finished", supervisor.log.read_text())) == 2


def test_backoff_doubles_to_a_cap_and_starts_over_after_a_healthy_run() -> None:
    backoff = Backoff(first=0.25, cap=2.0, stayed_up=30.0)
    assert [backoff.after(1.0) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert backoff.after(30.0) == 0.25
    assert backoff.after(0.1) == 0.5


def test_processes_0_is_one_per_core() -> None:
    assert resolve_processes(0) == len(os.sched_getaffinity(0))
    assert resolve_processes(3) == 3


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--processes", "-1"], "-1 is smaller than the minimum of 0"),
        (["--processes", "2", "--url", "memory://one"], "a pool needs a shared server"),
    ],
)
async def test_a_pool_that_cannot_work_is_a_settings_error(
    arguments: list[str], complaint: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", "worker", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    (line,) = err.decode().splitlines()
    assert process.returncode == 2 and line.startswith("Error: ") and complaint in line
    assert out == b""
