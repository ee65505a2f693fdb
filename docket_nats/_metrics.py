"""The task metrics of this process, with docket's metric names, for prometheus-client.

Counters, one gauge and two histograms, fed where tasks are added and by the
state recorder (every run passes through it), served by prometheus-client
(`_metrics_exporter`). Where they are kept depends on the process:

- one process (the default): in plain counters that a collector registered in
  prometheus-client's default registry reads when scraped, so an application that
  already exports that registry (a web app adding tasks, say) shows them too.
  prometheus-client's own instruments take a lock and several calls per update,
  which measured about 10 us more CPU per task on a worker draining no-op tasks
  (`benchmarks/metrics_overhead.py`); a custom collector is prometheus-client's
  way of exporting values kept elsewhere.
- `PROMETHEUS_MULTIPROC_DIR` set: prometheus-client's multi-process mode. Its
  instruments write every update to a file in that directory, and any process can
  serve the sum over all of them (`_metrics_exporter`).

Where the OpenTelemetry API is installed (the `otel` extra), the same
instruments exist as OpenTelemetry metrics of the same names, with docket's
attribute names (`docket.name`, `docket.task`): observable counters and gauge
read from these counts, histograms recording each value (`Mirror`). Without an
SDK meter provider they are the API's no-ops.
"""

from __future__ import annotations

import atexit
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

# A sample's labels as (name, value) pairs: ("docket", ...) and, for per-task
# metrics, ("task", ...). Tuples, so they hash.
Labels = tuple[tuple[str, str], ...]


def task_labels(docket_name: str, task: str) -> Labels:
    return (("docket", docket_name), ("task", task))


def docket_labels(docket_name: str) -> Labels:
    return (("docket", docket_name),)


TASK = ("docket", "task")
DOCKET = ("docket",)

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Counted where tasks are added (any process using a Docket).
    "docket_tasks_added": ("How many tasks added to the docket", TASK),
    "docket_tasks_replaced": ("How many tasks replaced on the docket", TASK),
    "docket_tasks_scheduled": ("How many tasks added or replaced on the docket", TASK),
    "docket_tasks_cancelled": ("How many tasks cancelled from the docket", DOCKET),
    "docket_tasks_stricken": ("How many tasks have been stricken from executing", TASK),
    # Counted by workers.
    "docket_tasks_started": ("How many tasks started", TASK),
    "docket_tasks_redelivered": (
        "How many tasks started that were redelivered from another worker",
        TASK,
    ),
    "docket_tasks_completed": ("How many tasks that have completed in any state", TASK),
    "docket_tasks_succeeded": ("How many tasks that have succeeded", TASK),
    "docket_tasks_failed": ("How many tasks that have failed", TASK),
    "docket_tasks_retried": ("How many tasks that have been retried", TASK),
    "docket_tasks_perpetuated": ("How many tasks that have been self-perpetuated", TASK),
    "docket_tasks_interrupted": ("How many running tasks were stopped by a cancel", TASK),
    "docket_tasks_dropped": (
        "How many runs Debounce, Cooldown or RateLimit refused for good",
        TASK,
    ),
    # Counted by a worker that lost contact with the server (worker/_fencing.py).
    "docket_tasks_fenced": (
        "How many running tasks a worker cancelled on losing contact",
        TASK,
    ),
    "docket_tasks_fence_refused": (
        "How many tasks did not stop when their worker fenced itself (may overlap a copy)",
        TASK,
    ),
    # Counted by a worker whose event loop was blocked (worker/_loop_watch.py).
    "docket_tasks_blocked_loop": (
        "How many running tasks were on a worker whose event loop was blocked past "
        "their leases (may have overlapped a redelivered copy)",
        TASK,
    ),
}
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
HISTOGRAMS = {
    "docket_task_duration": "How long tasks take to complete (seconds)",
    "docket_task_punctuality": "How late a task started after its scheduled time (seconds)",
}
RUNNING = "docket_tasks_running"
RUNNING_HELP = "How many tasks that are currently running"

# docket's OpenTelemetry attribute names for our Prometheus label names.
OTEL_ATTRIBUTES = {"docket": "docket.name", "task": "docket.task"}


def _values(labels: Labels) -> list[str]:
    return [value for _, value in labels]


class Metrics(Protocol):
    """What the rest of the package calls: `count`, `observe`, `running[labels] += 1`."""

    running: dict[Labels, int]

    def count(self, name: str, labels: Labels) -> None: ...

    def observe(self, name: str, labels: Labels, value: float) -> None: ...


class _Buckets:
    """One histogram series: per-bucket counts (the last one past every bound) and sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        for index, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[index] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # a copy: the event loop goes on counting
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class LocalMetrics:
    """One process's metrics in plain counters, read when scraped or collected:
    by prometheus-client (as a collector of its default registry) and by
    OpenTelemetry (observable instruments). Only the histograms push each value
    to OpenTelemetry, which has no observable histogram.

    Updates come from the event loop; readers run on other threads (the HTTP
    server's, the OpenTelemetry reader's) and take copies, which are atomic under
    the GIL."""

    def __init__(self) -> None:
        self.counts: dict[str, defaultdict[Labels, int]] = {
            name: defaultdict(int) for name in COUNTERS
        }
        self.histograms: dict[str, dict[Labels, _Buckets]] = {name: {} for name in HISTOGRAMS}
        self.running: dict[Labels, int] = defaultdict(int)
        self.mirror: Mirror | None = None

    def count(self, name: str, labels: Labels) -> None:
        self.counts[name][labels] += 1

    def observe(self, name: str, labels: Labels, value: float) -> None:
        series = self.histograms[name]
        buckets = series.get(labels)
        if buckets is None:
            buckets = series[labels] = _Buckets()
        buckets.observe(value)
        if self.mirror is not None:
            self.mirror.observe(name, labels, value)

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, label_names) in COUNTERS.items():
            counter = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, value in self.counts[name].copy().items():
                counter.add_metric(_values(labels), value)
            yield counter
        running = GaugeMetricFamily(RUNNING, RUNNING_HELP, labels=TASK)
        for labels, value in self.running.copy().items():
            running.add_metric(_values(labels), value)
        yield running
        for name, help_text in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(f"{name}_seconds", help_text, labels=TASK)
            for labels, buckets in self.histograms[name].copy().items():
                histogram.add_metric(_values(labels), buckets.cumulative(), buckets.sum)
            yield histogram


class _Running(dict[Labels, int]):
    """Tasks running now, by labels; every change is also written to `gauge`."""

    def __init__(self, gauge: Gauge) -> None:
        super().__init__()
        self._gauge = gauge

    def __missing__(self, labels: Labels) -> int:
        return 0

    def __setitem__(self, labels: Labels, value: int) -> None:
        super().__setitem__(labels, value)
        self._gauge.labels(*_values(labels)).set(value)


class SharedMetrics(LocalMetrics):
    """prometheus-client's multi-process mode: each update also goes to
    prometheus-client's instruments, which write it to this process's file in
    `PROMETHEUS_MULTIPROC_DIR`, where any process reads the sum. (The
    instruments register in the default registry, which multi-process mode does
    not serve: `_metrics_exporter` uses a `MultiProcessCollector` instead.)"""

    def __init__(self) -> None:
        super().__init__()
        self._counters = {
            name: Counter(name, help_text, labels) for name, (help_text, labels) in COUNTERS.items()
        }
        self._histograms = {
            name: Histogram(f"{name}_seconds", help_text, TASK, buckets=BUCKETS)
            for name, help_text in HISTOGRAMS.items()
        }
        # The gauge of a process that has exited drops out of the sum.
        self.running = _Running(Gauge(RUNNING, RUNNING_HELP, TASK, multiprocess_mode="livesum"))

    def count(self, name: str, labels: Labels) -> None:
        super().count(name, labels)
        self._counters[name].labels(*_values(labels)).inc()

    def observe(self, name: str, labels: Labels, value: float) -> None:
        super().observe(name, labels, value)
        self._histograms[name].labels(*_values(labels)).observe(value)


class Mirror:
    """The same instruments as OpenTelemetry metrics (meter `docket_nats`).

    Made through the API's proxy meter at import: they start reporting whenever
    the application sets an SDK meter provider, before or after that. Counters
    and the running gauge are observable (read from `metrics` when the SDK
    collects: nothing to do per task); histograms record each value."""

    def __init__(self, metrics: LocalMetrics) -> None:
        from opentelemetry.metrics import Observation, get_meter

        meter = get_meter("docket_nats")
        self._observation = Observation
        self._attributes: dict[Labels, dict[str, str]] = {}
        for name, (help_text, _) in COUNTERS.items():
            meter.create_observable_counter(
                name,
                callbacks=[self._reader(metrics.counts[name])],
                unit="1",
                description=help_text,
            )
        meter.create_observable_up_down_counter(
            RUNNING, callbacks=[self._reader(metrics.running)], unit="1", description=RUNNING_HELP
        )
        self._histograms = {
            name: meter.create_histogram(name, unit="s", description=help_text).record
            for name, help_text in HISTOGRAMS.items()
        }

    def _attributes_of(self, labels: Labels) -> dict[str, str]:
        attributes = self._attributes.get(labels)
        if attributes is None:
            attributes = self._attributes[labels] = {
                OTEL_ATTRIBUTES[name]: value for name, value in labels
            }
        return attributes

    def _reader(
        self, values: Mapping[Labels, int]
    ) -> Callable[[CallbackOptions], list[Observation]]:
        def observations(options: CallbackOptions) -> list[Observation]:
            return [
                self._observation(value, self._attributes_of(labels))
                for labels, value in dict(values).items()
            ]

        return observations

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self._histograms[name](value, self._attributes_of(labels))


def multiprocess_directory() -> str | None:
    """prometheus-client's multi-process mode: where every process keeps its values."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _forget_live_values() -> None:
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def _metrics() -> Metrics:
    metrics: LocalMetrics
    if multiprocess_directory() is not None:
        # A process that exits cleanly takes its running-task gauge out of the
        # sum; one killed outright leaves it until `mark_process_dead(pid)`.
        atexit.register(_forget_live_values)
        metrics = SharedMetrics()
    else:
        metrics = LocalMetrics()
        REGISTRY.register(metrics)
    try:
        metrics.mirror = Mirror(metrics)
    except ImportError:  # pragma: no cover - exercised only without the extra
        pass
    return metrics


registry: Metrics = _metrics()
