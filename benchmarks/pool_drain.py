"""Drain of no-op tasks by `docket-nats worker --processes 1` vs `--processes 2`.

    python -m benchmarks.pool_drain [--tasks 40000] [--rounds 2] [--concurrency 10] [--metrics]

One nats-server on 127.0.0.1 for the whole run. Each round loads `--tasks` no-ops
on a fresh docket, then runs `python -m docket_nats worker --processes N
--until-finished` on it; the settings alternate 1, 2, 1, 2, ... so both see the
same machine load. The drain is timed from the first task gone from the work
stream to the stream empty (the stream is polled every 10 ms: process start-up
is not counted). CPU seconds over the same span are read from /proc (utime +
stime) for the worker processes (the supervisor's children, or the one worker),
the supervisor itself (N=2) and nats-server. Logging is at WARNING so that the
figures are the pool's, not the log lines' (issue #15 measures those apart).
`--metrics` adds `--metrics-port 0` to both (one process: plain counters; a
pool: prometheus-client's multi-process mode). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.workloads import add_many_noops, fresh_name
from docket_nats import Docket
from docket_nats._embedded import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of one process; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine spent (all but idle and iowait)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


@dataclass
class Round:
    processes: int
    tasks_per_s: float
    seconds: float
    workers_cpu: float
    supervisor_cpu: float
    server_cpu: float
    machine_cpu: float  # every process's, this benchmark's and other users' too
    worker_switches: int


def workers_of(supervisor: int, processes: int) -> list[int]:
    return [supervisor] if processes == 1 else children_of(supervisor)


def cpu_sample(supervisor: int, processes: int, server: int) -> dict[int, float]:
    pids = [*workers_of(supervisor, processes), server]
    pids += [] if processes == 1 else [supervisor]
    return {pid: cpu_seconds(pid) for pid in pids}


def switches_sample(supervisor: int, processes: int) -> int:
    return sum(context_switches(pid) for pid in workers_of(supervisor, processes))


async def one_round(
    url: str, server_pid: int, processes: int, arguments: argparse.Namespace
) -> Round:
    name = fresh_name("pool")
    async with Docket(name=name, url=url) as docket:
        await add_many_noops(docket, arguments.tasks)
        js = docket.connection.js
        stream = docket.names.stream
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "docket_nats", "worker",
            "--url", url, "--docket", name, "--tasks", "benchmarks.tasks:collection",
            "--processes", str(processes), "--concurrency", str(arguments.concurrency),
            "--until-finished", "--logging-level", "WARNING",
            "--minimum-check-interval", "0.05",
            *(["--metrics-port", "0", "--http-host", "127.0.0.1"] if arguments.metrics else []),
            cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # Polled: the stream's size is the one measure shared by both settings.
        while (await js.stream_info(stream)).state.messages >= arguments.tasks:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        first = time.perf_counter()
        before = cpu_sample(process.pid, processes, server_pid)
        machine_before = machine_busy_seconds()
        switches_before = switches_sample(process.pid, processes)
        while (await js.stream_info(stream)).state.messages > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        last = time.perf_counter()
        after = cpu_sample(process.pid, processes, server_pid)
        machine = machine_busy_seconds() - machine_before
        switches = switches_sample(process.pid, processes) - switches_before
        assert await process.wait() == 0
    used = {pid: after.get(pid, 0.0) - before.get(pid, 0.0) for pid in after}
    supervisor = used.pop(process.pid) if processes > 1 else 0.0
    server = used.pop(server_pid)
    seconds = last - first
    return Round(
        processes=processes,
        tasks_per_s=arguments.tasks / seconds,
        seconds=seconds,
        workers_cpu=sum(used.values()),
        supervisor_cpu=supervisor,
        server_cpu=server,
        machine_cpu=machine,
        worker_switches=switches,
    )


def report(rounds: list[Round], arguments: argparse.Namespace) -> str:
    lines = [
        f"- {arguments.tasks:,} no-op tasks per round, --concurrency {arguments.concurrency}, "
        f"{arguments.rounds} rounds per setting, alternating"
        + (", --metrics-port 0" if arguments.metrics else ", no --metrics-port"),
        "",
        "| round | --processes | tasks/s | seconds | CPU s: workers | supervisor | nats-server "
        "| whole machine | % of 2 cores: workers / nats-server / rest "
        "| per task, workers: CPU µs / context switches |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tasks = arguments.tasks
    for index, each in enumerate(rounds, 1):
        share = 100 / (2 * each.seconds)
        rest = each.machine_cpu - each.workers_cpu - each.supervisor_cpu - each.server_cpu
        lines.append(
            f"| {index} | {each.processes} | {each.tasks_per_s:,.0f} | {each.seconds:.2f} "
            f"| {each.workers_cpu:.2f} | {each.supervisor_cpu:.2f} | {each.server_cpu:.2f} "
            f"| {each.machine_cpu:.2f} | {each.workers_cpu * share:.0f}% / "
            f"{each.server_cpu * share:.0f}% / {rest * share:.0f}% "
            f"| {each.workers_cpu / tasks * 1e6:.0f} / {each.worker_switches / tasks:.2f} |"
        )
    medians = {
        n: statistics.median(r.tasks_per_s for r in rounds if r.processes == n) for n in (1, 2)
    }
    lines += [
        "",
        f"Median tasks/s: --processes 1: {medians[1]:,.0f}; --processes 2: {medians[2]:,.0f}; "
        f"ratio 2/1: {medians[2] / medians[1]:.2f}x",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--metrics", action="store_true", help="serve /metrics (a pool: multi-process mode)"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = ServerProcess(free_port(), Path(store))
        server.start()
        try:
            assert server.process is not None
            rounds: list[Round] = []
            for _ in range(arguments.rounds):
                for processes in (1, 2):
                    rounds.append(
                        await one_round(server.url, server.process.pid, processes, arguments)
                    )
                    print(rounds[-1], flush=True)
        finally:
            server.stop()
    print(report(rounds, arguments))


if __name__ == "__main__":
    asyncio.run(main())
