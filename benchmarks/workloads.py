"""The six workloads; each takes a Backend and returns its measurements.

Sizes come from `Sizes` (full run or --quick). Every workload uses a docket name
of its own, so no run sees another's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.backends import Backend
from benchmarks.tasks import noop

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    sequential: int = 5_000
    concurrent_batch: int = 1_000
    concurrent_rounds: int = 5
    drain: int = 20_000
    drain_deadline: float = 60.0  # a slow backend is measured on what it ran by then
    latency_tasks: int = 500  # at 50/s: 10 s
    latency_rate: float = 50.0
    burst: int = 2_000
    burst_ahead: float = 3.0
    rss_total: int = 100_000
    rss_chunk: int = 10_000
    rss_deadline: float = 120.0


QUICK = Sizes(
    sequential=1_000,
    concurrent_rounds=3,
    drain=5_000,
    drain_deadline=20.0,
    latency_tasks=100,
    burst=500,
    rss_total=20_000,
    rss_chunk=5_000,
    rss_deadline=40.0,
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def fresh_name(workload: str) -> str:
    return f"bench-{workload}-{uuid.uuid4().hex[:8]}"


async def add_many_noops(docket: Any, count: int, batch: int = 1_000, **options: Any) -> None:
    """Load `count` no-ops with awaited add() calls, `batch` of them in flight at once."""
    for start in range(0, count, batch):
        await asyncio.gather(
            *(docket.add(noop, **options)() for _ in range(min(batch, count - start)))
        )


# -- 1. sequential enqueue ---------------------------------------------------------


async def sequential_enqueue(backend: Backend, sizes: Sizes) -> dict[str, float]:
    async with backend.docket(fresh_name("seq")) as docket:
        for _ in range(100):  # warm-up: connections, registration, stream look-ups
            await docket.add(noop)()
        started = time.perf_counter()
        for _ in range(sizes.sequential):
            await docket.add(noop)()
        elapsed = time.perf_counter() - started
    return {"tasks_per_s": sizes.sequential / elapsed, "tasks": sizes.sequential}


# -- 2. concurrent enqueue ---------------------------------------------------------


async def concurrent_enqueue(backend: Backend, sizes: Sizes) -> dict[str, Any]:
    rates: list[float] = []
    note = ""
    if backend.default_url != backend.url:
        # docket at its defaults: redis-py's pool holds 100 connections.
        try:
            async with backend.module.Docket(fresh_name("conc"), url=backend.default_url) as docket:
                await asyncio.gather(*(docket.add(noop)() for _ in range(sizes.concurrent_batch)))
            note = "at defaults: ran"
        except Exception as error:
            note = (
                f"at defaults ({backend.default_url}): {sizes.concurrent_batch:,} gathered adds "
                f"fail with {type(error).__name__}: {error}; measured with {backend.url}"
            )
    async with backend.docket(fresh_name("conc")) as docket:
        await asyncio.gather(*(docket.add(noop)() for _ in range(100)))  # warm-up
        for _ in range(sizes.concurrent_rounds):
            started = time.perf_counter()
            await asyncio.gather(*(docket.add(noop)() for _ in range(sizes.concurrent_batch)))
            rates.append(sizes.concurrent_batch / (time.perf_counter() - started))
    return {
        "tasks_per_s": statistics.median(rates),
        "best_tasks_per_s": max(rates),
        "rounds": sizes.concurrent_rounds,
        **({"note": note} if note else {}),
    }


# -- 3. drain ------------------------------------------------------------------------


def _worker_command(backend: Backend, name: str, concurrency: int | None) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.worker_process", "--backend", backend.key]
    command += ["--url", backend.url, "--docket", name]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    return command


async def drain(backend: Backend, sizes: Sizes, concurrency: int | None) -> dict[str, float]:
    name = fresh_name("drain")
    async with backend.docket(name) as docket:
        await add_many_noops(docket, sizes.drain)
    command = _worker_command(backend, name, concurrency)
    command += ["drain", "--expect", str(sizes.drain), "--deadline", str(sizes.drain_deadline)]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({process.returncode}): {stderr.decode()[-2000:]}")
    report = json.loads(lines[-1])
    return {
        "tasks_per_s": report["completed"] / report["seconds"],
        "completed": report["completed"],
        "loaded": sizes.drain,
        "seconds": report["seconds"],
    }


# -- 4. add → start latency ------------------------------------------------------------


async def latency(backend: Backend, sizes: Sizes) -> dict[str, float]:
    module = backend.module
    started: dict[str, float] = {}
    all_started = asyncio.Event()
    expected = sizes.latency_tasks + 20

    async def probe(key: str = module.TaskKey()) -> None:
        started[key] = time.perf_counter()
        if len(started) >= expected:
            all_started.set()

    added: dict[str, float] = {}
    async with backend.docket(fresh_name("lat")) as docket:
        async with backend.worker(docket) as worker:
            running = asyncio.create_task(worker.run_forever())
            await asyncio.sleep(1.0)  # the worker is up and waiting
            interval = 1.0 / sizes.latency_rate
            begin = time.perf_counter()
            for index in range(expected):  # the first 20 are a warm-up
                await asyncio.sleep(max(0.0, begin + index * interval - time.perf_counter()))
                key = f"lat-{index}"
                added[key] = time.perf_counter()
                await docket.add(probe, key=key)()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await all_started.wait()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    delays = [
        (started[key] - added[key]) * 1000
        for key in itertools.islice(added, 20, None)
        if key in started
    ]
    return {
        "min_ms": min(delays),
        "p50_ms": percentile(delays, 0.5),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": max(delays),
        "measured": len(delays),
        "lost": sizes.latency_tasks - len(delays),
    }


# -- 5. burst of due tasks -------------------------------------------------------------


async def burst(backend: Backend, sizes: Sizes) -> dict[str, float]:
    module = backend.module
    lateness: list[float] = []
    all_started = asyncio.Event()

    async def due(execution: Any = module.CurrentExecution()) -> None:  # noqa: B008
        lateness.append((time.time() - execution.when.timestamp()) * 1000)
        if len(lateness) >= sizes.burst:
            all_started.set()

    async with backend.docket(fresh_name("burst")) as docket:
        async with backend.worker(docket) as worker:
            running = asyncio.create_task(worker.run_forever())
            when = datetime.now(UTC) + timedelta(seconds=sizes.burst_ahead)
            load_started = time.perf_counter()
            await add_many_noops_with(docket, due, sizes.burst, when)
            load_seconds = time.perf_counter() - load_started
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sizes.burst_ahead + 60):
                    await all_started.wait()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    return {
        "min_ms": min(lateness),
        "p50_ms": percentile(lateness, 0.5),
        "p99_ms": percentile(lateness, 0.99),
        "max_ms": max(lateness),
        "started": len(lateness),
        "load_seconds": load_seconds,
    }


async def add_many_noops_with(docket: Any, function: Any, count: int, when: datetime) -> None:
    for start in range(0, count, 500):
        await asyncio.gather(
            *(docket.add(function, when=when)() for _ in range(min(500, count - start)))
        )


# -- 6. worker memory ------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def memory(backend: Backend, sizes: Sizes) -> dict[str, Any]:
    """RSS of a worker process: idle, after a warm-up of 1,000 tasks, after the rest.

    Tasks go in chunks (the worker drains one chunk before the next is added), so
    a slow backend is measured on what it ran before the deadline.
    """
    name = fresh_name("rss")
    report_every = 1_000
    command = [*_worker_command(backend, name, None), "serve", "--every", str(report_every)]
    errors = tempfile.TemporaryFile()  # a file, not a pipe: nobody reads it while running
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors
    )
    assert process.stdout is not None
    stdout = process.stdout

    def failure(what: str) -> RuntimeError:
        errors.seek(0)
        return RuntimeError(f"{what}: {errors.read().decode(errors='replace')[-2000:]}")

    done = 0

    async def wait_for(count: int, deadline: float) -> bool:
        nonlocal done
        while done < count:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    line = await stdout.readline()
            except TimeoutError:
                return False
            if not line:
                raise failure("the worker process exited")
            done = int(line)
        return True

    try:
        async with asyncio.timeout(30):
            if (await stdout.readline()).strip() != b"ready":
                raise failure("the worker process did not start")
        idle = rss_kib(process.pid)
        deadline = time.monotonic() + sizes.rss_deadline
        async with backend.docket(name) as docket:
            await add_many_noops(docket, report_every)
            warmed = await wait_for(report_every, deadline)
            baseline = rss_kib(process.pid)
            loaded = report_every
            while warmed and loaded < sizes.rss_total:
                chunk = min(sizes.rss_chunk, sizes.rss_total - loaded)
                await add_many_noops(docket, chunk)
                loaded += chunk
                if not await wait_for(loaded, deadline):
                    break
            final = rss_kib(process.pid)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        errors.close()
    result: dict[str, Any] = {
        "completed": done,
        "idle_mib": idle / 1024,
        "after_warmup_mib": baseline / 1024,
        "after_all_mib": final / 1024,
        "growth_pct": 100 * (final - baseline) / baseline,
        "growth_from_idle_pct": 100 * (final - idle) / idle,
    }
    if done < sizes.rss_total:
        result["note"] = (
            f"ran {done:,} of {sizes.rss_total:,} tasks within the {sizes.rss_deadline:.0f} s "
            "budget (RSS read when the budget ran out)"
        )
    return result
