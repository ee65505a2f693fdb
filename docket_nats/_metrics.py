"""The task metrics of this process, with docket's metric names, on prometheus-client.

Counters, one gauge and two histograms, fed where tasks are added and by the
state recorder (every run passes through it). They live in prometheus-client's
default registry, so an application that already exports it (a web app adding
tasks, say) shows them with its own metrics; `_metrics_exporter` serves them from
a worker. With `PROMETHEUS_MULTIPROC_DIR` set they are kept in that directory,
prometheus-client's multi-process mode, and any process can serve the sum.

Where the OpenTelemetry API is installed (the `otel` extra), every count and
observation also goes to an OpenTelemetry instrument of the same name, with
docket's attribute names (`docket.name`, `docket.task`). Without an SDK meter
provider those instruments are the API's no-ops.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Mapping

from prometheus_client import Counter, Gauge, Histogram, multiprocess

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


def otel_attributes(labels: Labels) -> dict[str, str]:
    return {OTEL_ATTRIBUTES[name]: value for name, value in labels}


# An OpenTelemetry instrument's add() or record(), as we call them.
Record = Callable[[float, Mapping[str, str]], None]


class _Mirror:
    """The OpenTelemetry side of the instruments: empty unless the API is installed."""

    def __init__(self) -> None:
        self.counters: dict[str, Record] = {}
        self.histograms: dict[str, Record] = {}
        self.running: Record | None = None


def _otel_mirror() -> _Mirror:
    mirror = _Mirror()
    try:
        from opentelemetry import metrics
    except ImportError:  # pragma: no cover - exercised only without the extra
        return mirror
    # The proxy meter: instruments made now start recording once the
    # application sets a meter provider, whenever it does.
    meter = metrics.get_meter("docket_nats")
    for name, (help_text, _) in COUNTERS.items():
        mirror.counters[name] = meter.create_counter(name, unit="1", description=help_text).add
    for name, help_text in HISTOGRAMS.items():
        mirror.histograms[name] = meter.create_histogram(
            name, unit="s", description=help_text
        ).record
    mirror.running = meter.create_up_down_counter(RUNNING, unit="1", description=RUNNING_HELP).add
    return mirror


def _values(labels: Labels) -> list[str]:
    return [value for _, value in labels]


class RunningGauge:
    """`registry.running[labels] += 1`: tasks running now, per docket and task.

    Keeps this process's values to read them back; every change goes to the
    Prometheus gauge (summed over live processes in multi-process mode) and to
    the OpenTelemetry up-down counter as a difference."""

    def __init__(self, gauge: Gauge, mirror: Record | None) -> None:
        self._gauge = gauge
        self._mirror = mirror
        self._values: dict[Labels, int] = {}
        self._setters: dict[Labels, Callable[[int, int], None]] = {}

    def __getitem__(self, labels: Labels) -> int:
        return self._values.get(labels, 0)

    def __setitem__(self, labels: Labels, value: int) -> None:
        setter = self._setters.get(labels)
        if setter is None:
            setter = self._setters[labels] = self._setter(labels)
        setter(value, value - self._values.get(labels, 0))
        self._values[labels] = value

    def _setter(self, labels: Labels) -> Callable[[int, int], None]:
        set_gauge = self._gauge.labels(*_values(labels)).set
        mirror = self._mirror
        if mirror is None:
            return lambda value, _change: set_gauge(value)
        attributes = otel_attributes(labels)

        def both(value: int, change: int) -> None:
            set_gauge(value)
            mirror(change, attributes)

        return both


class Registry:
    """The process's task metrics, behind the calls the rest of the package makes:
    `count(name, labels)`, `observe(name, labels, value)`, `running[labels]`.

    Each (metric, labels) gets one recording function, made on first use: the
    prometheus-client child (its `labels()` takes a lock and builds a key on
    every call) and the OpenTelemetry attributes are looked up once, since these
    calls run about ten times per task."""

    def __init__(self) -> None:
        self._counters = {
            name: Counter(name, help_text, labels) for name, (help_text, labels) in COUNTERS.items()
        }
        self._histograms = {
            name: Histogram(f"{name}_seconds", help_text, TASK, buckets=BUCKETS)
            for name, help_text in HISTOGRAMS.items()
        }
        self._mirror = _otel_mirror()
        # In multi-process mode the gauge of a process that has exited drops out.
        gauge = Gauge(RUNNING, RUNNING_HELP, TASK, multiprocess_mode="livesum")
        self.running = RunningGauge(gauge, self._mirror.running)
        self._counts: dict[str, dict[Labels, Callable[[], None]]] = {name: {} for name in COUNTERS}
        self._observations: dict[str, dict[Labels, Callable[[float], None]]] = {
            name: {} for name in HISTOGRAMS
        }

    def count(self, name: str, labels: Labels) -> None:
        counts = self._counts[name]
        record = counts.get(labels)
        if record is None:
            record = counts[labels] = self._counting(name, labels)
        record()

    def observe(self, name: str, labels: Labels, value: float) -> None:
        observations = self._observations[name]
        record = observations.get(labels)
        if record is None:
            record = observations[labels] = self._observing(name, labels)
        record(value)

    def _counting(self, name: str, labels: Labels) -> Callable[[], None]:
        increment = self._counters[name].labels(*_values(labels)).inc
        mirror = self._mirror.counters.get(name)
        if mirror is None:
            return increment
        attributes = otel_attributes(labels)

        def both() -> None:
            increment()
            mirror(1, attributes)

        return both

    def _observing(self, name: str, labels: Labels) -> Callable[[float], None]:
        observe = self._histograms[name].labels(*_values(labels)).observe
        mirror = self._mirror.histograms.get(name)
        if mirror is None:
            return observe
        attributes = otel_attributes(labels)

        def both(value: float) -> None:
            observe(value)
            mirror(value, attributes)

        return both


def multiprocess_directory() -> str | None:
    """prometheus-client's multi-process mode: where every process keeps its values."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _forget_live_values() -> None:
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


# A process that exits cleanly takes its running-task gauge out of the sum; one
# killed outright leaves it until `mark_process_dead(pid)` is called for it.
atexit.register(_forget_live_values)

registry = Registry()
