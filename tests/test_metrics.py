"""The Prometheus endpoint: scraped over HTTP and parsed (in process, and from
`docket-nats worker --metrics-port` as a subprocess)."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta

import pytest
from http_probe import http_get

from docket_nats import Cooldown, Docket, Retry, Worker, tasks
from docket_nats._embedded import free_port
from docket_nats._metrics_exporter import serve_metrics

pytestmark = pytest.mark.timeout(60)

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[-0-9.e+]+)$")


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    return await http_get(port, path)


def parse(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


async def test_metrics_count_runs_and_read_depths(docket: Docket, worker: Worker) -> None:
    attempts: list[int] = []

    async def measured(fail_first: bool, retry: Retry = Retry(attempts=2)) -> None:
        attempts.append(1)
        if fail_first and len(attempts) == 1:
            raise RuntimeError("once")

    async def broken() -> None:
        raise RuntimeError("always")

    await docket.add(measured)(True)
    await docket.add(measured)(False)
    await docket.add(broken)()
    await worker.run_until_finished()
    await docket.add(measured, datetime.now(UTC) + timedelta(hours=1))(False)

    async with serve_metrics(docket, 0) as port:
        assert port is not None
        status, body = await scrape(port)
        assert (await scrape(port, "/other"))[0] == 404
    assert status == 200
    samples = parse(body)
    mine = frozenset({("docket", docket.name), ("task", "measured")})
    assert samples[("docket_tasks_started_total", mine)] == 3
    assert samples[("docket_tasks_retried_total", mine)] == 1
    assert samples[("docket_tasks_succeeded_total", mine)] == 2
    assert samples[("docket_tasks_running", mine)] == 0
    assert samples[("docket_task_duration_seconds_count", mine)] == 3
    broken_labels = frozenset({("docket", docket.name), ("task", "broken")})
    assert samples[("docket_tasks_failed_total", broken_labels)] == 1
    depth = frozenset({("docket", docket.name)})
    assert samples[("docket_schedule_depth", depth)] == 1
    assert samples[("docket_queue_depth", depth)] == 0
    assert samples[("docket_consumer_lag", depth)] == 0


async def test_producer_counters_strikes_and_dropped_runs(docket: Docket, worker: Worker) -> None:
    async def cooled(cooldown: Cooldown = Cooldown(timedelta(minutes=5))) -> None:
        pass

    async def refused(customer: str) -> None:
        pass

    docket.register(cooled)
    docket.register(refused)
    later = datetime.now(UTC) + timedelta(hours=1)
    await docket.add(cooled, later, key="one")()
    await docket.add(cooled, later, key="one")()  # already scheduled: not counted
    await docket.replace(cooled, later, "one")()
    await docket.cancel("one")
    # Two runs inside one cooldown window: the second is dropped, never started twice.
    await docket.add(cooled)()
    await docket.add(cooled)()
    await docket.strike(refused, "customer", "==", "blocked")
    await docket.add(refused)("blocked")  # refused at add()
    await worker.run_until_finished()

    async with serve_metrics(docket, 0) as port:
        assert port is not None
        samples = parse((await scrape(port))[1])
    cooled_labels = frozenset({("docket", docket.name), ("task", "cooled")})
    assert samples[("docket_tasks_added_total", cooled_labels)] == 3
    assert samples[("docket_tasks_replaced_total", cooled_labels)] == 1
    assert samples[("docket_tasks_scheduled_total", cooled_labels)] == 4
    docket_only = frozenset({("docket", docket.name)})
    assert samples[("docket_tasks_cancelled_total", docket_only)] == 1
    refused_labels = frozenset({("docket", docket.name), ("task", "refused")})
    assert samples[("docket_tasks_stricken_total", refused_labels)] == 1
    assert samples[("docket_strikes_in_effect", docket_only)] == 1
    # A dropped run started (its dependencies ran) but never counts as a success,
    # a retry, or a second decrement of the running gauge.
    assert samples[("docket_tasks_started_total", cooled_labels)] == 2
    assert samples[("docket_tasks_succeeded_total", cooled_labels)] == 1
    assert samples[("docket_tasks_dropped_total", cooled_labels)] == 1
    assert samples[("docket_tasks_completed_total", cooled_labels)] == 2
    assert ("docket_tasks_retried_total", cooled_labels) not in samples
    assert samples[("docket_tasks_running", cooled_labels)] == 0


async def test_worker_command_serves_metrics(docket: Docket, nats_url: str) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        "worker",
        "--url",
        nats_url,
        "--docket",
        docket.name,
        "--metrics-port",
        str(port),
        "--http-host",
        "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        execution = await docket.add(tasks.trace)("measured")
        await execution.get_result(timeout=timedelta(seconds=20))
        samples = parse((await scrape(port))[1])
        labels = frozenset({("docket", docket.name), ("task", "trace")})
        assert samples[("docket_tasks_succeeded_total", labels)] == 1
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=20)
