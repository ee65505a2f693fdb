"""Burst lateness and add → start latency, with where the time goes.

    python -m benchmarks.punctuality [--runs 3] [--burst 2000] [--latency 500]
        [--rate 50] [--workloads burst,latency] [--path] [--url nats://...]

The `burst` and `latency` workloads of `benchmarks/run.py` (the same code, from
`benchmarks/workloads.py`), run `--runs` times against one nats-server of its own
(file store, 127.0.0.1), each run's p50 / p99 / max printed as one line, then the
median run. Targets: burst lateness p99 ≤ 100 ms (2,000 due at one instant),
add → start p99 ≤ 1 ms at 50 tasks/s.

`--path` also stamps each burst task along its way (by wrapping the worker's
actors in this process: the measured code is unchanged) and prints, per stage,
p50 / p99 of the time from the due instant:

- `fired`: the server's timestamp of the message on the run subject (its
  schedule fired), from the delivery's reply subject;
- `delivered`: the puller's subscription callback got it;
- `released`: the early hold handed it to the executor (held until due);
- `slot`: the executor started working on it (a run slot was free);
- `started`: the task body began (what lateness measures);

and splits add → start into `add()` itself (publish → PubAck), PubAck → the
puller's callback, and the callback → the task body.

Without `--path`, each burst run also reports this process's CPU time from the
first due message handed to the executor to the last run started, per task:
what the lateness is made of on an idle core (2,000 times it is about the p99), and much
steadier than wall time on a shared machine.

To compare two checkouts in one run, alternate them, e.g.
`PYTHONPATH=/path/to/other/checkout python -m benchmarks.punctuality`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docket_nats
from benchmarks.backends import Backend
from benchmarks.workloads import Sizes, burst, fresh_name, latency, percentile
from docket_nats._embedded import ServerProcess, free_port

STAGES = ("fired", "delivered", "released", "slot")


class PathStamps:
    """Wall-clock instants of each burst message at each stage, by stream sequence."""

    def __init__(self) -> None:
        self.stamps: dict[str, dict[int, float]] = {stage: {} for stage in STAGES}
        self.due: dict[int, float] = {}
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        from docket_nats.worker import _early_hold, _executor, _puller

        def sequence(message: Any) -> int:
            return int(message.metadata.sequence.stream)

        def wrap(owner: Any, name: str, stage: str, of: Callable[[Any], Any]) -> None:
            original = getattr(owner, name)

            def stamp(argument: Any) -> None:
                message = of(argument)
                if (message.headers or {}).get("Status"):
                    return
                now = time.time()
                seq = sequence(message)
                stamps[stage].setdefault(seq, now)
                if stage == "delivered":
                    stamps["fired"][seq] = message.metadata.timestamp.timestamp()
                    due = _early_hold.due_time(message)
                    if due is not None:
                        dues[seq] = due

            if inspect.iscoroutinefunction(original):

                async def stamped(self: Any, argument: Any) -> Any:
                    stamp(argument)
                    return await original(self, argument)

            else:

                def stamped(self: Any, argument: Any) -> Any:
                    stamp(argument)
                    return original(self, argument)

            setattr(owner, name, stamped)
            self._undo.append(lambda: setattr(owner, name, original))

        stamps = self.stamps
        dues = self.due
        wrap(_puller.Puller, "_on_message", "delivered", lambda message: message)
        wrap(_executor.Executor, "deliver", "released", lambda message: message)
        wrap(_executor.Executor, "_process", "slot", lambda entry: entry.message)

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def report(self) -> str:
        lines = []
        for stage in STAGES:
            values = [
                (at - self.due[seq]) * 1000
                for seq, at in self.stamps[stage].items()
                if seq in self.due
            ]
            if values:
                lines.append(
                    f"    {stage:>9}: p50 {percentile(values, 0.5):8.1f} ms  "
                    f"p99 {percentile(values, 0.99):8.1f} ms  "
                    f"min {min(values):8.1f}  max {max(values):8.1f}  (n={len(values)})"
                )
        return "\n".join(lines)


class WindowCpu:
    """This process's CPU time from the first due message handed to the executor
    to the last run slot taken: per task, what the burst's lateness is made of
    on an idle core, and steadier than wall time on a shared machine."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.runs = 0
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        from docket_nats.worker import _executor

        deliver, process = _executor.Executor.deliver, _executor.Executor._process
        window = self

        def delivered(self: Any, message: Any) -> None:
            if window.first is None and (message.headers or {}).get("Docket-When"):
                window.first = time.process_time()
            deliver(self, message)

        async def processing(self: Any, entry: Any) -> None:
            window.last = time.process_time()
            window.runs += 1
            await process(self, entry)

        _executor.Executor.deliver = delivered  # type: ignore[method-assign]
        _executor.Executor._process = processing  # type: ignore[method-assign]

        def undo() -> None:
            _executor.Executor.deliver = deliver  # type: ignore[method-assign]
            _executor.Executor._process = process  # type: ignore[method-assign]

        self._undo.append(undo)

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()

    def per_task_us(self, tasks: int) -> float:
        return (self.last - (self.first or self.last)) / tasks * 1e6


async def latency_path(backend: Backend, sizes: Sizes) -> dict[str, float]:
    """`workloads.latency`, also timing when `add()` returned (its PubAck came back)
    and when the puller's callback got the message: add → start split in three."""
    from docket_nats.worker import _puller

    added: dict[str, float] = {}
    acked: dict[str, float] = {}
    pulled: dict[str, float] = {}
    started: dict[str, float] = {}
    all_started = asyncio.Event()
    expected = sizes.latency_tasks + 20
    on_message = _puller.Puller._on_message

    async def stamped(self: Any, message: Any) -> None:
        if not (message.headers or {}).get("Status"):
            pulled[message.subject.rsplit(".", 1)[-1]] = time.perf_counter()
        await on_message(self, message)

    async def probe(key: str = docket_nats.TaskKey()) -> None:
        started[key] = time.perf_counter()
        if len(started) >= expected:
            all_started.set()

    _puller.Puller._on_message = stamped  # type: ignore[method-assign]
    try:
        async with backend.docket(fresh_name("latpath")) as docket:
            async with backend.worker(docket) as worker:
                running = asyncio.create_task(worker.run_forever())
                await asyncio.sleep(1.0)
                begin = time.perf_counter()
                for index in range(expected):
                    interval = index / sizes.latency_rate
                    await asyncio.sleep(max(0.0, begin + interval - time.perf_counter()))
                    key = f"lat-{index}"
                    added[key] = time.perf_counter()
                    await docket.add(probe, key=key)()
                    acked[key] = time.perf_counter()
                async with asyncio.timeout(30):
                    await all_started.wait()
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
    finally:
        _puller.Puller._on_message = on_message  # type: ignore[method-assign]
    keys = list(added)[20:]

    def split(since: dict[str, float], until: dict[str, float]) -> str:
        values = [(until[key] - since[key]) * 1000 for key in keys]
        return f"p50 {percentile(values, 0.5):.3f} / p99 {percentile(values, 0.99):.3f} ms"

    print(f"    add() (publish → PubAck): {split(added, acked)}")
    print(f"    PubAck → puller callback: {split(acked, pulled)}")
    print(f"    puller → task body      : {split(pulled, started)}")
    delays = [(started[key] - added[key]) * 1000 for key in keys]
    return {
        "min_ms": min(delays),
        "p50_ms": percentile(delays, 0.5),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": max(delays),
    }


async def measure(url: str, options: argparse.Namespace) -> None:
    backend = Backend("docket-nats", "nats", docket_nats, url, default_url=url)
    sizes = Sizes(burst=options.burst, latency_tasks=options.latency, latency_rate=options.rate)
    print(f"docket_nats from {Path(docket_nats.__file__).parent}", flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    for run in range(options.runs):
        for workload in options.workloads.split(","):
            stamps = PathStamps() if options.path and workload == "burst" else None
            if stamps is not None:
                stamps.install()
            window = WindowCpu() if workload == "burst" and not options.path else None
            if window is not None:
                window.install()
            try:
                if workload == "burst":
                    result = await burst(backend, sizes)
                elif options.path:
                    result = await latency_path(backend, sizes)
                else:
                    result = await latency(backend, sizes)
            finally:
                if stamps is not None:
                    stamps.uninstall()
                if window is not None:
                    window.uninstall()
            if window is not None:
                result["window_cpu_us"] = window.per_task_us(options.burst)
            results.setdefault(workload, []).append(result)
            print(
                f"run {run + 1} {workload:>7}: p50 {result['p50_ms']:7.2f} ms  "
                f"p99 {result['p99_ms']:7.2f} ms  max {result['max_ms']:7.2f} ms"
                + (
                    f"  CPU {result['window_cpu_us']:6.1f} µs/task from release to last start"
                    if "window_cpu_us" in result
                    else ""
                ),
                flush=True,
            )
            if stamps is not None:
                print(stamps.report(), flush=True)
    for workload, runs in results.items():
        p99s = [run["p99_ms"] for run in runs]
        median = statistics.median(p99s)
        print(f"{workload}: p99 per run {', '.join(f'{p:.2f}' for p in p99s)}; median {median:.2f}")
        if workload == "burst" and "window_cpu_us" in runs[0]:
            cpu = [run["window_cpu_us"] for run in runs]
            print(
                f"burst: CPU µs/task release→last start per run "
                f"{', '.join(f'{c:.1f}' for c in cpu)}; least {min(cpu):.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--latency", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--workloads", default="burst,latency")
    parser.add_argument("--path", action="store_true", help="stamp burst tasks along the way")
    parser.add_argument("--url", default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = None
        url = options.url
        if url is None:
            server = ServerProcess(free_port(), Path(directory) / "nats")
            server.start()
            url = server.url
        try:
            asyncio.run(measure(url, options))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
