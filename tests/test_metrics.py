"""The Prometheus endpoint: scraped over HTTP and parsed with prometheus-client's
parser (in process, and from `docket-nats worker --metrics-port` subprocesses,
one endpoint each or one for all in prometheus-client's multi-process mode); the
same instruments as OpenTelemetry metrics, read with the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from http_probe import http_get
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from prometheus_client.parser import text_string_to_metric_families

from docket_nats import Cooldown, Docket, Retry, Worker, tasks
from docket_nats._embedded import free_port
from docket_nats._metrics_exporter import serve_metrics

pytestmark = pytest.mark.timeout(60)

# The process's one meter provider (OpenTelemetry allows one): the instruments
# docket_nats made at import start recording into this reader from now on.
OTEL_READER = InMemoryMetricReader()
otel_metrics.set_meter_provider(MeterProvider(metric_readers=[OTEL_READER]))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    return await http_get(port, path)


def parse(body: str) -> Samples:
    """Every sample by (name, labels), as prometheus-client's parser reads them."""
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Poll what only a scrape shows (no event exists for it) until true, bounded."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110  (scraped state: nothing to await)
            await asyncio.sleep(0.05)


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


async def test_scrape_while_a_worker_runs(docket: Docket, worker: Worker) -> None:
    release = asyncio.Event()

    async def held() -> None:
        await release.wait()

    for _ in range(3):
        await docket.add(held)()
    labels = frozenset({("docket", docket.name), ("task", "held")})
    depth = frozenset({("docket", docket.name)})
    running = asyncio.create_task(worker.run_forever())
    try:
        async with serve_metrics(docket, 0) as port:
            assert port is not None

            async def scraped() -> Samples:
                return parse((await scrape(port))[1])

            async def three_running() -> bool:
                return (await scraped()).get(("docket_tasks_running", labels)) == 3

            await eventually(three_running)
            status, body = await scrape(port)
            assert status == 200
            families = {family.name: family for family in text_string_to_metric_families(body)}
            assert families["docket_tasks_started"].type == "counter"
            assert families["docket_tasks_running"].type == "gauge"
            assert families["docket_task_punctuality_seconds"].type == "histogram"
            assert families["docket_queue_depth"].type == "gauge"
            samples = parse(body)
            assert samples[("docket_tasks_started_total", labels)] == 3
            assert ("docket_tasks_succeeded_total", labels) not in samples
            assert samples[("docket_queue_depth", depth)] == 3  # held by the worker
            infinite = labels | {("le", "+Inf")}
            assert samples[("docket_task_punctuality_seconds_bucket", infinite)] == 3
            assert samples[("docket_task_punctuality_seconds_count", labels)] == 3

            release.set()

            async def all_succeeded() -> bool:
                return (await scraped()).get(("docket_tasks_succeeded_total", labels)) == 3

            await eventually(all_succeeded)
            samples = await scraped()
            assert samples[("docket_tasks_running", labels)] == 0
            assert samples[("docket_task_duration_seconds_count", labels)] == 3
            assert samples[("docket_task_duration_seconds_bucket", infinite)] == 3
    finally:
        worker.stop()
        await running


@asynccontextmanager
async def worker_process(
    nats_url: str, docket_name: str, *options: str, environment: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`docket-nats worker` as a subprocess, stopped (SIGTERM) at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        "worker",
        "--url",
        nats_url,
        "--docket",
        docket_name,
        "--http-host",
        "127.0.0.1",
        *options,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(environment or {})},
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), timeout=20)


async def serving(port: int) -> bool:
    try:
        return (await scrape(port))[0] == 200
    except OSError:  # not listening yet
        return False


async def wait_for_workers(docket: Docket, count: int) -> None:
    async def registered() -> bool:
        return len(await docket.workers()) == count

    await eventually(registered)


async def test_each_worker_process_serves_its_own_counts(docket: Docket, nats_url: str) -> None:
    """Without a shared directory every worker process serves its own counts;
    Prometheus scrapes each and sums them (`sum by (docket, task)`)."""
    ports = [free_port(), free_port()]
    async with (
        worker_process(
            nats_url, docket.name, "--concurrency", "2", "--metrics-port", str(ports[0])
        ),
        worker_process(
            nats_url, docket.name, "--concurrency", "2", "--metrics-port", str(ports[1])
        ),
    ):
        await eventually(lambda: serving(ports[0]))
        await eventually(lambda: serving(ports[1]))
        await wait_for_workers(docket, 2)
        executions = [await docket.add(tasks.sleep)(0.1) for _ in range(20)]
        for execution in executions:
            await execution.get_result(timeout=timedelta(seconds=30))
        labels = frozenset({("docket", docket.name), ("task", "sleep")})
        succeeded = [
            parse((await scrape(port))[1]).get(("docket_tasks_succeeded_total", labels), 0)
            for port in ports
        ]
    assert sum(succeeded) == 20
    assert all(count > 0 for count in succeeded), succeeded  # both really ran some


async def test_multiprocess_mode_serves_the_sum_of_every_process(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR shared, one endpoint serves what every worker
    process counted, including one that has exited."""
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(5):
        await docket.add(tasks.trace)("first")
    async with worker_process(
        nats_url, docket.name, "--until-finished", environment=shared
    ) as first:
        assert await asyncio.wait_for(first.wait(), timeout=30) == 0

    port = free_port()
    async with worker_process(
        nats_url, docket.name, "--metrics-port", str(port), environment=shared
    ):
        executions = [await docket.add(tasks.trace)("second") for _ in range(3)]
        for execution in executions:
            await execution.get_result(timeout=timedelta(seconds=30))
        status, body = await scrape(port)
    assert status == 200
    samples = parse(body)
    labels = frozenset({("docket", docket.name), ("task", "trace")})
    assert samples[("docket_tasks_succeeded_total", labels)] == 8
    assert samples[("docket_tasks_started_total", labels)] == 8
    assert samples[("docket_task_duration_seconds_count", labels)] == 8
    assert samples[("docket_tasks_running", labels)] == 0
    assert samples[("docket_queue_depth", frozenset({("docket", docket.name)}))] == 0


def otel_points(
    docket_name: str, task: str | None
) -> dict[str, NumberDataPoint | HistogramDataPoint]:
    """docket_nats's OpenTelemetry data points for one docket (and task), by metric."""
    wanted = {"docket.name": docket_name} | ({"docket.task": task} if task else {})
    points: dict[str, NumberDataPoint | HistogramDataPoint] = {}
    data = OTEL_READER.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "docket_nats":
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    if dict(point.attributes or {}) == wanted:
                        assert isinstance(point, NumberDataPoint | HistogramDataPoint)
                        points[metric.name] = point
    return points


async def test_the_same_instruments_as_opentelemetry_metrics(
    docket: Docket, worker: Worker
) -> None:
    async def measured() -> None:
        pass

    await docket.add(measured)()
    await docket.add(measured)()
    await docket.add(measured, datetime.now(UTC) + timedelta(hours=1), key="later")()
    await docket.cancel("later")
    await worker.run_until_finished()

    points = otel_points(docket.name, "measured")

    def value(name: str) -> float:
        point = points[name]
        assert isinstance(point, NumberDataPoint)
        return point.value

    def observations(name: str) -> int:
        point = points[name]
        assert isinstance(point, HistogramDataPoint)
        return point.count

    assert value("docket_tasks_added") == 3
    assert value("docket_tasks_started") == 2
    assert value("docket_tasks_succeeded") == 2
    assert value("docket_tasks_completed") == 2
    assert value("docket_tasks_running") == 0
    assert observations("docket_task_duration") == 2
    assert observations("docket_task_punctuality") == 2
    cancelled = otel_points(docket.name, None)["docket_tasks_cancelled"]
    assert isinstance(cancelled, NumberDataPoint)
    assert cancelled.value == 1
