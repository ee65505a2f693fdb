"""Chaos run: kill -9 workers and a server node under a mixed load, then check invariants.

    python deploy/chaos.py [--seconds 60] [--workers 3] [--seed N]

Starts a 3-node JetStream cluster on 127.0.0.1 (tests/cluster.py) and worker
subprocesses (`docket-nats worker`, R3 docket, 3 s redelivery timeout). For
`--seconds` it adds immediate tasks, future tasks (due 1-15 s ahead) and a few
perpetual chains (every second), SIGKILLs a random worker every few seconds (and
starts a replacement), and once SIGKILLs the work stream's leader node, restarting
it ten seconds later. Then it stops adding, lets the queue drain and checks:

- nothing lost: every immediate and future task ran at least once (duplicates,
  from kills between a task's run and its ack, are counted, not failures);
- perpetual chains alive: every chain ran in the last few seconds of the drain;
- schedules kept: no future task started before its due time, and none later than
  TOLERANCE (redelivery timeout + leader election), with p50 / p99 / max reported.

Every task appends a line to a shared log file (O_APPEND): the run's record
survives the kill of the process that ran it. Exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docket_nats import Docket, Perpetual  # noqa: E402
from tests.cluster import Cluster, stream_leader  # noqa: E402

NAME = "chaos"
REDELIVERY = 3.0
# A task held by a killed worker comes back after the redelivery timeout; one
# whose stream lost its leader waits for the election (~4 s, docs/nats-facts.md §4).
TOLERANCE = REDELIVERY + 7.0
PERPETUAL_CHAINS = 3


def _record(line: str) -> None:
    with open(os.environ["CHAOS_LOG"], "a") as log:
        log.write(line + "\n")


async def immediate(n: int) -> None:
    _record(f"immediate {n} {time.time():.6f}")


async def future(n: int, due: float) -> None:
    _record(f"future {n} {time.time() - due:.6f}")


async def tick(chain: str, perpetual: Perpetual = Perpetual(every=timedelta(seconds=1))) -> None:
    _record(f"tick {chain} {time.time():.6f}")


tasks = [immediate, future, tick]


class Workers:
    """Worker subprocesses that can be killed and replaced."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def spawn(self) -> None:
        self.started += 1
        log = open(self.directory / f"worker-{self.started}.log", "ab")  # the child owns it
        command = [sys.executable, "-m", "docket_nats", "worker", "--tasks", "deploy.chaos:tasks"]
        command += ["--url", self.url, "--docket", NAME, "--replicas", "3"]
        command += ["--name", f"chaos-{self.started}", "--concurrency", "20"]
        command += ["--redelivery-timeout", str(REDELIVERY), "--shutdown-grace", "2"]
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKET_LOGGING_LEVEL": "WARNING"}
        self.processes.append(
            subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT
            )
        )

    def kill_one(self, rng: random.Random) -> int:
        victim = self.processes.pop(rng.randrange(len(self.processes)))
        victim.kill()
        victim.wait()
        return victim.pid

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def produce(
    docket: Docket, seconds: float, rng: random.Random, cluster: Cluster, workers: Workers
) -> dict[str, int]:
    counts = {"immediate": 0, "future": 0}
    started = time.monotonic()
    next_worker_kill = 5.0
    node_killed: tuple[str, float] | None = None
    for chain in range(PERPETUAL_CHAINS):
        await docket.add(tick, key=f"tick-{chain}")(f"tick-{chain}")
    while (elapsed := time.monotonic() - started) < seconds:
        batch = [docket.add(immediate)(counts["immediate"] + i) for i in range(20)]
        counts["immediate"] += len(batch)
        due = time.time() + rng.uniform(1, 15)
        when = datetime.fromtimestamp(due, UTC)
        batch.append(docket.add(future, when=when)(counts["future"], due))
        counts["future"] += 1
        await asyncio.gather(*batch)
        if elapsed >= next_worker_kill:
            pid = workers.kill_one(rng)
            workers.spawn()
            print(f"t={elapsed:5.1f}s kill -9 worker pid {pid}; started a replacement", flush=True)
            next_worker_kill += rng.uniform(3, 8)
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
    return counts


def read_log(path: Path) -> tuple[Counter[int], Counter[int], list[float], dict[str, float]]:
    immediates: Counter[int] = Counter()
    futures: Counter[int] = Counter()
    lateness: list[float] = []
    last_tick: dict[str, float] = {}
    for line in path.read_text().splitlines():
        kind, ident, value = line.split()
        if kind == "immediate":
            immediates[int(ident)] += 1
        elif kind == "future":
            if futures[int(ident)] == 0:
                lateness.append(float(value))
            futures[int(ident)] += 1
        elif kind == "tick":
            last_tick[ident] = max(last_tick.get(ident, 0.0), float(value))
    return immediates, futures, lateness, last_tick


async def run(arguments: argparse.Namespace) -> int:
    rng = random.Random(arguments.seed)
    with tempfile.TemporaryDirectory(prefix="docket-chaos-") as scratch:
        directory = Path(scratch)
        log = directory / "runs.log"
        log.touch()
        os.environ["CHAOS_LOG"] = str(log)
        cluster = Cluster(directory / "cluster")
        cluster.start()
        workers = Workers(cluster.url, directory)
        try:
            await cluster.wait_ready()
            async with Docket(NAME, url=cluster.urls, replicas=3) as docket:
                for _ in range(arguments.workers):
                    workers.spawn()
                print(
                    f"cluster {cluster.url}; {arguments.workers} workers; "
                    f"{arguments.seconds:.0f} s of chaos",
                    flush=True,
                )
                counts = await produce(docket, arguments.seconds, rng, cluster, workers)
                for name in cluster.nodes:
                    if name not in cluster.alive():
                        cluster.restart(name)
                print(
                    f"added {counts['immediate']} immediate, {counts['future']} future, "
                    f"{PERPETUAL_CHAINS} perpetual chains; draining",
                    flush=True,
                )
                deadline = time.monotonic() + 15 + TOLERANCE
                while time.monotonic() < deadline:
                    immediates, futures, _, _ = read_log(log)
                    if len(immediates) == counts["immediate"] and len(futures) == counts["future"]:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # let the perpetual chains show they are alive
                drained_at = time.time()
                immediates, futures, lateness, last_tick = read_log(log)
                pending = (
                    await docket.connection.js.stream_info(docket.names.stream)
                ).state.messages
        finally:
            workers.stop()
            cluster.stop()
        return report(
            counts, immediates, futures, lateness, last_tick, drained_at, pending, workers.started
        )


def report(
    counts: dict[str, int],
    immediates: Counter[int],
    futures: Counter[int],
    lateness: list[float],
    last_tick: dict[str, float],
    drained_at: float,
    pending: int,
    workers_started: int,
) -> int:
    lost_immediate = counts["immediate"] - len(immediates)
    lost_future = counts["future"] - len(futures)
    duplicates = sum(c - 1 for c in immediates.values()) + sum(c - 1 for c in futures.values())
    stale = {c: round(drained_at - t, 1) for c, t in last_tick.items() if drained_at - t > 3.5}
    missing_chains = PERPETUAL_CHAINS - len(last_tick)
    early = [x for x in lateness if x < -0.05]
    late = [x for x in lateness if x > TOLERANCE]
    ordered = sorted(lateness) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"worker processes started: {workers_started}; messages left in the stream: "
        f"{pending} (the perpetual chains' next runs)"
    )
    print(f"immediate: {counts['immediate']} added, {len(immediates)} ran, lost {lost_immediate}")
    print(f"future:    {counts['future']} added, {len(futures)} ran, lost {lost_future}")
    print(f"duplicates (ran more than once): {duplicates}")
    print(
        f"future lateness s: p50 {statistics.median(ordered):.3f}, p99 {p99:.3f}, "
        f"max {ordered[-1]:.3f}; early {len(early)}, later than {TOLERANCE:.0f} s: {len(late)}"
    )
    print(
        f"perpetual chains alive: {len(last_tick) - len(stale)}/{PERPETUAL_CHAINS} "
        f"(stale: {stale or 'none'})"
    )
    failures = []
    if lost_immediate or lost_future:
        failures.append("tasks lost")
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
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
