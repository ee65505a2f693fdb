"""Chaos run: kill -9 workers and a server node, partition and slow workers'
connections, under a mixed load; then check invariants.

    python deploy/chaos.py [--seconds 60] [--workers 3] [--seed N]

Starts a 3-node JetStream cluster on 127.0.0.1 (deploy/local_cluster.py, nodes
not advertising each other) and worker subprocesses (`docket-nats worker`, R3
docket, 3 s redelivery timeout), each connected through its own loopback proxy
(deploy/tcp_proxy.py) to one node, falling back to the others. For `--seconds`
it adds immediate tasks, future tasks (due 1-8 s ahead), long tasks (`hold`,
1-4 s each, so runs are in flight when a fault hits) and a few perpetual chains
(every second), and meanwhile:

- SIGKILLs a random worker every few seconds (and starts a replacement);
- partitions a random worker every few seconds: its proxy black-holes the
  connection (open, but nothing passes) for 1-2 redelivery timeouts, so the
  worker must fence itself before the server redelivers its runs elsewhere;
  then the connection is cut and the worker reconnects;
- delays a random worker's connection (0.2-1.5 s each way) for a few seconds;
- once SIGKILLs the work stream's leader node, restarting it ten seconds later.

Then it stops adding, lets the queue drain and checks:

- nothing lost: every immediate, future and hold task ran (to its end, for hold)
  at least once, within `--drain` seconds after the due times (a task that did
  not, while messages remain in the stream, is reported as not drained in
  time); duplicates, from kills between a task's run and its ack, are counted,
  not failures;
- never two copies of a key at once: each hold run logs its start and its end
  (normal, or cancelled by a fence or a stop; a run of a SIGKILLed worker ends at
  the kill), and no two runs of one key overlap;
- perpetual chains alive: every chain ran in the last few seconds of the drain;
- schedules kept: no future task started before its due time, and none later than
  TOLERANCE (redelivery timeout + leader election), with p50 / p99 / max reported.

Every task appends a line to a shared log file (O_APPEND): the run's record
survives the kill of the process that ran it. Exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.local_cluster import Cluster, stream_leader  # noqa: E402
from deploy.tcp_proxy import TcpProxy  # noqa: E402
from docket_nats import Docket, Perpetual, TaskKey  # noqa: E402

NAME = "chaos"
REDELIVERY = 3.0
# A task held by a killed worker comes back after the redelivery timeout; one
# whose stream lost its leader waits for the election (~4 s, docs/nats-facts.md §4).
TOLERANCE = REDELIVERY + 7.0
PERPETUAL_CHAINS = 3
# Future tasks are due 1 s to this far ahead (the drain waits for the last).
FUTURE_HORIZON = 8.0
# A partition lasts 1-2 redelivery timeouts; none begins this close to the end.
QUIET_END = 2 * REDELIVERY


def _record(line: str) -> None:
    with open(os.environ["CHAOS_LOG"], "a") as log:
        log.write(line + "\n")


async def immediate(n: int) -> None:
    _record(f"immediate {n} {time.time():.6f}")


async def future(n: int, due: float) -> None:
    _record(f"future {n} {time.time() - due:.6f}")


async def tick(chain: str, perpetual: Perpetual = Perpetual(every=timedelta(seconds=1))) -> None:
    _record(f"tick {chain} {time.time():.6f}")


async def hold(seconds: float, key: str = TaskKey()) -> None:
    """A run long enough to be in flight when a worker is partitioned or killed."""
    _record(f"start {key} {os.getpid()} {time.time():.6f}")
    outcome = "cancelled"
    try:
        await asyncio.sleep(seconds)
        outcome = "done"
    finally:
        _record(f"end {key} {os.getpid()} {time.time():.6f} {outcome}")


tasks = [immediate, future, tick, hold]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    proxy: TcpProxy


class Workers:
    """Worker subprocesses, each behind its own proxy, that can be killed and replaced."""

    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.ports = [node.port for node in cluster.nodes.values()]
        self.directory = directory
        self.running: list[Worker] = []
        self.started = 0

    async def spawn(self) -> None:
        self.started += 1
        first = self.started % len(self.ports)  # spread the workers over the nodes
        proxy = TcpProxy(*self.ports[first:], *self.ports[:first])
        await proxy.start()
        self.running.append(Worker(self._launch(proxy.url), proxy))

    def _launch(self, url: str) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"worker-{self.started}.log", "ab")  # the child owns it
        command = [sys.executable, "-m", "docket_nats", "worker", "--tasks", "deploy.chaos:tasks"]
        command += ["--url", url, "--docket", NAME, "--replicas", "3"]
        command += ["--name", f"chaos-{self.started}", "--concurrency", "20"]
        command += ["--redelivery-timeout", str(REDELIVERY), "--shutdown-grace", "2"]
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKET_LOGGING_LEVEL": "WARNING"}
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT
        )

    async def kill_one(self, rng: random.Random) -> int:
        victim = self.running.pop(rng.randrange(len(self.running)))
        victim.process.kill()
        victim.process.wait()
        # Its runs end here: the overlap check closes them at this instant.
        _record(f"killed {victim.process.pid} {time.time():.6f}")
        await victim.proxy.close()
        return victim.process.pid

    async def stop(self) -> None:
        for worker in self.running:
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.running:
            try:
                worker.process.wait(10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                _record(f"killed {worker.process.pid} {time.time():.6f}")
            await worker.proxy.close()


@dataclass
class Faults:
    """The network faults injected (each one a task, so adding goes on meanwhile)."""

    workers: Workers
    rng: random.Random
    partitions: int = 0
    delays: int = 0
    pending: set[asyncio.Task[None]] = field(default_factory=set[asyncio.Task[None]])
    # One fault at a time per connection (healing a delay must not end a partition).
    busy: set[TcpProxy] = field(default_factory=set[TcpProxy])

    def _victim(self) -> Worker | None:
        idle = [worker for worker in self.workers.running if worker.proxy not in self.busy]
        return self.rng.choice(idle) if idle else None

    def partition(self, elapsed: float) -> None:
        if (worker := self._victim()) is None:
            return
        seconds = self.rng.uniform(REDELIVERY, 2 * REDELIVERY)
        print(
            f"t={elapsed:5.1f}s partition worker pid {worker.process.pid} for {seconds:.1f}s",
            flush=True,
        )
        self.partitions += 1
        self._start(worker.proxy, self._partition(worker.proxy, seconds))

    def delay(self, elapsed: float) -> None:
        if (worker := self._victim()) is None:
            return
        each_way, seconds = self.rng.uniform(0.2, 1.5), self.rng.uniform(2, 6)
        print(
            f"t={elapsed:5.1f}s delay worker pid {worker.process.pid} by {each_way:.2f}s "
            f"each way for {seconds:.1f}s",
            flush=True,
        )
        self.delays += 1
        self._start(worker.proxy, self._delay(worker.proxy, each_way, seconds))

    async def settle(self) -> None:
        await asyncio.gather(*self.pending)

    def _start(self, proxy: TcpProxy, fault: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(fault)
        self.pending.add(task)
        self.busy.add(proxy)

        def done(task: asyncio.Task[None]) -> None:
            self.pending.discard(task)
            self.busy.discard(proxy)

        task.add_done_callback(done)

    @staticmethod
    async def _partition(proxy: TcpProxy, seconds: float) -> None:
        proxy.black_hole()
        await asyncio.sleep(seconds)
        proxy.cut()  # the black-holed connection lost bytes: a new one, then forward
        proxy.heal()

    @staticmethod
    async def _delay(proxy: TcpProxy, each_way: float, seconds: float) -> None:
        proxy.delay(each_way)
        await asyncio.sleep(seconds)
        proxy.heal()


async def produce(
    docket: Docket, seconds: float, rng: random.Random, cluster: Cluster, workers: Workers
) -> tuple[dict[str, int], Faults]:
    counts = {"immediate": 0, "future": 0, "hold": 0, "worker kills": 0}
    faults = Faults(workers, rng)
    started = time.monotonic()
    next_worker_kill = 5.0
    next_partition = 2.0
    next_delay = 4.0
    node_killed: tuple[str, float] | None = None
    for chain in range(PERPETUAL_CHAINS):
        await docket.add(tick, key=f"tick-{chain}")(f"tick-{chain}")
    while (elapsed := time.monotonic() - started) < seconds:
        batch = [docket.add(immediate)(counts["immediate"] + i) for i in range(20)]
        counts["immediate"] += len(batch)
        due = time.time() + rng.uniform(1, FUTURE_HORIZON)
        when = datetime.fromtimestamp(due, UTC)
        batch.append(docket.add(future, when=when)(counts["future"], due))
        counts["future"] += 1
        batch.append(docket.add(hold, key=f"hold-{counts['hold']}")(rng.uniform(1, 4)))
        counts["hold"] += 1
        await asyncio.gather(*batch)
        if elapsed >= next_worker_kill:
            pid = await workers.kill_one(rng)
            await workers.spawn()
            counts["worker kills"] += 1
            print(f"t={elapsed:5.1f}s kill -9 worker pid {pid}; started a replacement", flush=True)
            next_worker_kill += rng.uniform(3, 8)
        # No fault begins in the last seconds: each heals before the drain.
        quiet = elapsed >= seconds - QUIET_END
        if elapsed >= next_partition and not quiet:
            faults.partition(elapsed)
            next_partition += rng.uniform(3, 6)
        if elapsed >= next_delay and not quiet:
            faults.delay(elapsed)
            next_delay += rng.uniform(4, 8)
        if node_killed is None and elapsed >= seconds / 3:
            leader = await stream_leader(cluster.urls, docket.names.stream)
            cluster.kill(leader)
            node_killed = (leader, elapsed)
            print(
                f"t={elapsed:5.1f}s kill -9 server {leader} (the work stream's leader)", flush=True
            )
        elif node_killed is not None and node_killed[1] >= 0 and elapsed >= node_killed[1] + 10:
            cluster.restart(node_killed[0])
            print(f"t={elapsed:5.1f}s restarted server {node_killed[0]}", flush=True)
            node_killed = (node_killed[0], -1.0)
        await asyncio.sleep(0.1)
    await faults.settle()  # every partition healed before the drain
    return counts, faults


@dataclass
class RunLog:
    """What the tasks (and the kills) wrote to the shared log."""

    immediates: Counter[int] = field(default_factory=Counter[int])
    futures: Counter[int] = field(default_factory=Counter[int])
    lateness: list[float] = field(default_factory=list[float])
    last_tick: dict[str, float] = field(default_factory=dict[str, float])
    # key -> [(pid, start, end or None)], in log order; pid -> when it was SIGKILLed
    runs: defaultdict[str, list[tuple[int, float, float | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    finished: set[str] = field(default_factory=set[str])
    fenced_or_stopped: int = 0
    killed: dict[int, float] = field(default_factory=dict[int, float])

    def overlaps(self) -> list[str]:
        """Keys with two runs at once: a run without an end ends when its worker
        was killed, or never (it still counts against any later run)."""
        found: list[str] = []
        for key, runs in self.runs.items():
            intervals = sorted(
                (start, end if end is not None else self.killed.get(pid, float("inf")))
                for pid, start, end in runs
            )
            if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(intervals)):
                found.append(key)
        return found


def read_log(path: Path) -> RunLog:
    log = RunLog()
    for line in path.read_text().splitlines():
        kind, ident, *values = line.split()
        if kind == "immediate":
            log.immediates[int(ident)] += 1
        elif kind == "future":
            if log.futures[int(ident)] == 0:
                log.lateness.append(float(values[0]))
            log.futures[int(ident)] += 1
        elif kind == "tick":
            log.last_tick[ident] = max(log.last_tick.get(ident, 0.0), float(values[0]))
        elif kind == "start":
            log.runs[ident].append((int(values[0]), float(values[1]), None))
        elif kind == "end":
            pid, at, outcome = int(values[0]), float(values[1]), values[2]
            runs = log.runs[ident]
            # The latest run of this key by this process without an end.
            for index in reversed(range(len(runs))):
                if runs[index][0] == pid and runs[index][2] is None:
                    runs[index] = (pid, runs[index][1], at)
                    break
            if outcome == "done":
                log.finished.add(ident)
            else:
                log.fenced_or_stopped += 1
        elif kind == "killed":
            log.killed[int(ident)] = float(values[0])
    return log


async def run(arguments: argparse.Namespace) -> int:
    rng = random.Random(arguments.seed)
    with tempfile.TemporaryDirectory(prefix="docket-chaos-") as scratch:
        directory = Path(scratch)
        log = directory / "runs.log"
        log.touch()
        os.environ["CHAOS_LOG"] = str(log)
        cluster = Cluster(directory / "cluster", advertise=False)
        cluster.start()
        workers = Workers(cluster, directory)
        try:
            await cluster.wait_ready()
            async with Docket(NAME, url=cluster.urls, replicas=3) as docket:
                for _ in range(arguments.workers):
                    await workers.spawn()
                print(
                    f"cluster {cluster.url}; {arguments.workers} workers behind proxies; "
                    f"{arguments.seconds:.0f} s of chaos",
                    flush=True,
                )
                counts, faults = await produce(docket, arguments.seconds, rng, cluster, workers)
                for name in cluster.nodes:
                    if name not in cluster.alive():
                        cluster.restart(name)
                print(
                    f"added {counts['immediate']} immediate, {counts['future']} future, "
                    f"{counts['hold']} hold, {PERPETUAL_CHAINS} perpetual chains; draining",
                    flush=True,
                )
                # A backlog left by the faults gets up to --drain more seconds.
                deadline = time.monotonic() + FUTURE_HORIZON + TOLERANCE + arguments.drain
                while time.monotonic() < deadline:
                    seen = read_log(log)
                    if (
                        len(seen.immediates) == counts["immediate"]
                        and len(seen.futures) == counts["future"]
                        and len(seen.finished) == counts["hold"]
                    ):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # let the perpetual chains show they are alive
                drained_at = time.time()
                pending = (
                    await docket.connection.js.stream_info(docket.names.stream)
                ).state.messages
        finally:
            await workers.stop()
            cluster.stop()
        counts["partitions"], counts["delays"] = faults.partitions, faults.delays
        return report(counts, read_log(log), drained_at, pending, workers.started)


def report(
    counts: dict[str, int], log: RunLog, drained_at: float, pending: int, workers_started: int
) -> int:
    lost_immediate = counts["immediate"] - len(log.immediates)
    lost_future = counts["future"] - len(log.futures)
    lost_hold = counts["hold"] - len(log.finished)
    duplicates = sum(c - 1 for c in log.immediates.values()) + sum(
        c - 1 for c in log.futures.values()
    )
    hold_reruns = sum(len(runs) - 1 for runs in log.runs.values())
    overlapping = log.overlaps()
    stale = {c: round(drained_at - t, 1) for c, t in log.last_tick.items() if drained_at - t > 3.5}
    missing_chains = PERPETUAL_CHAINS - len(log.last_tick)
    early = [x for x in log.lateness if x < -0.05]
    late = [x for x in log.lateness if x > TOLERANCE]
    ordered = sorted(log.lateness) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"faults: {counts['worker kills']} worker kills, {counts['partitions']} partitions, "
        f"{counts['delays']} delays, 1 server node kill"
    )
    print(
        f"worker processes started: {workers_started}; messages left in the stream: "
        f"{pending} (the perpetual chains' next runs)"
    )
    print(
        f"immediate: {counts['immediate']} added, {len(log.immediates)} ran, lost {lost_immediate}"
    )
    print(f"future:    {counts['future']} added, {len(log.futures)} ran, lost {lost_future}")
    print(
        f"hold:      {counts['hold']} added, {len(log.finished)} ran to the end, lost "
        f"{lost_hold}; runs cut short (fenced or stopped) {log.fenced_or_stopped}, "
        f"runs again after a fault {hold_reruns}"
    )
    print(f"duplicates (immediate/future ran more than once): {duplicates}")
    print(f"keys with two runs at once: {len(overlapping)} {overlapping[:10] or ''}")
    print(
        f"future lateness s: p50 {statistics.median(ordered):.3f}, p99 {p99:.3f}, "
        f"max {ordered[-1]:.3f}; early {len(early)}, later than {TOLERANCE:.0f} s: {len(late)}"
    )
    print(
        f"perpetual chains alive: {len(log.last_tick) - len(stale)}/{PERPETUAL_CHAINS} "
        f"(stale: {stale or 'none'})"
    )
    failures = []
    if (lost_immediate or lost_future or lost_hold) and pending > PERPETUAL_CHAINS:
        failures.append(f"not drained in time ({pending} messages still in the stream)")
    elif lost_immediate or lost_future or lost_hold:
        failures.append("tasks lost")
    if overlapping:
        failures.append("two copies of a key ran at once")
    if stale or missing_chains:
        failures.append("a perpetual chain died")
    if early or late:
        failures.append("a schedule was not kept")
    print("INVARIANTS " + ("FAILED: " + ", ".join(failures) if failures else "HOLD"))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the chaos phase")
    parser.add_argument("--workers", type=int, default=3, help="worker processes at any time")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (kill choices, due times)"
    )
    parser.add_argument(
        "--drain", type=float, default=60.0, help="extra seconds the backlog may take to run"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
