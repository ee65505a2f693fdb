"""The task metrics of this process, with docket's metric names.

A few counters, one gauge and two histograms kept in memory, fed where tasks are
added and by the state recorder (every run passes through it), rendered in the
Prometheus text format. `metrics_exporter` serves them over HTTP.
"""

from __future__ import annotations

from collections import defaultdict

# A sample's labels as (name, value) pairs: ("docket", ...) and, for per-task
# metrics, ("task", ...). Tuples, so they hash and sort.
Labels = tuple[tuple[str, str], ...]


def task_labels(docket_name: str, task: str) -> Labels:
    return (("docket", docket_name), ("task", task))


def docket_labels(docket_name: str) -> Labels:
    return (("docket", docket_name),)


COUNTERS = {
    # Counted where tasks are added (any process using a Docket).
    "docket_tasks_added": "How many tasks added to the docket",
    "docket_tasks_replaced": "How many tasks replaced on the docket",
    "docket_tasks_scheduled": "How many tasks added or replaced on the docket",
    "docket_tasks_cancelled": "How many tasks cancelled from the docket",
    "docket_tasks_stricken": "How many tasks have been stricken from executing",
    # Counted by workers.
    "docket_tasks_started": "How many tasks started",
    "docket_tasks_redelivered": "How many tasks started that were redelivered from another worker",
    "docket_tasks_completed": "How many tasks that have completed in any state",
    "docket_tasks_succeeded": "How many tasks that have succeeded",
    "docket_tasks_failed": "How many tasks that have failed",
    "docket_tasks_retried": "How many tasks that have been retried",
    "docket_tasks_perpetuated": "How many tasks that have been self-perpetuated",
    "docket_tasks_interrupted": "How many running tasks were stopped by a cancel",
    "docket_tasks_dropped": "How many runs Debounce, Cooldown or RateLimit refused for good",
    # Counted by a worker that lost contact with the server (worker/_fencing.py).
    "docket_tasks_fenced": "How many running tasks a worker cancelled on losing contact",
    "docket_tasks_fence_refused": (
        "How many tasks did not stop when their worker fenced itself (may overlap a copy)"
    ),
}
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
HISTOGRAMS = {
    "docket_task_duration": "How long tasks take to complete (seconds)",
    "docket_task_punctuality": "How late a task started after its scheduled time (seconds)",
}


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[index] += 1
                break


class Registry:
    """The process's task metrics (one per process, like Prometheus clients')."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, int]] = {name: defaultdict(int) for name in COUNTERS}
        self.running: dict[Labels, int] = defaultdict(int)
        self.histograms: dict[str, dict[Labels, Histogram]] = {
            name: defaultdict(Histogram) for name in HISTOGRAMS
        }

    def count(self, name: str, labels: Labels) -> None:
        self.counters[name][labels] += 1

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self.histograms[name][labels].observe(value)

    def render(self, depths: dict[str, dict[str, int]]) -> str:
        lines: list[str] = []
        for name, help_text in COUNTERS.items():
            lines += [f"# HELP {name}_total {help_text}", f"# TYPE {name}_total counter"]
            for labels, value in sorted(self.counters[name].items()):
                lines.append(f"{name}_total{{{_labels(labels)}}} {value}")
        lines += [
            "# HELP docket_tasks_running How many tasks that are currently running",
            "# TYPE docket_tasks_running gauge",
        ]
        for labels, value in sorted(self.running.items()):
            lines.append(f"docket_tasks_running{{{_labels(labels)}}} {value}")
        for name, help_text in HISTOGRAMS.items():
            lines += [f"# HELP {name}_seconds {help_text}", f"# TYPE {name}_seconds histogram"]
            for labels, histogram in sorted(self.histograms[name].items()):
                base = _labels(labels)
                cumulative = 0
                for bound, count in zip(BUCKETS, histogram.counts, strict=True):
                    cumulative += count
                    lines.append(f'{name}_seconds_bucket{{{base},le="{bound}"}} {cumulative}')
                lines.append(f'{name}_seconds_bucket{{{base},le="+Inf"}} {histogram.total}')
                lines.append(f"{name}_seconds_sum{{{base}}} {histogram.sum}")
                lines.append(f"{name}_seconds_count{{{base}}} {histogram.total}")
        for name, help_text in (
            ("docket_queue_depth", "How many tasks are due to be executed now"),
            ("docket_schedule_depth", "How many tasks are scheduled for the future"),
            ("docket_consumer_lag", "Runnable tasks not yet delivered to any worker"),
            ("docket_strikes_in_effect", "How many strikes are currently in effect"),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            for docket_name, value in sorted(depths.get(name, {}).items()):
                lines.append(f"{name}{{{_labels(docket_labels(docket_name))}}} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels)


registry = Registry()
