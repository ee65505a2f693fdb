"""`docket-nats snapshot`: counts, the waiting and running tasks, the workers."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any

from .._snapshot import DocketSnapshot
from ..execution import Execution
from ._common import (
    CommandError,
    add_docket_options,
    collection_path,
    docket_from,
    environment,
)
from ._render import table


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "snapshot",
        help="show the docket's tasks and workers",
        description="Show how many tasks are scheduled, queued and running, list them "
        "(up to --limit of each), and the live workers.",
    )
    add_docket_options(parser)
    parser.add_argument("--limit", type=int, default=100, help="list at most this many tasks")
    parser.add_argument(
        "--tasks",
        action="extend",
        nargs="*",
        default=None,
        metavar="TASKS",
        help="MODULE:ATTR registers a task collection, as docket's (repeatable; "
        "$DOCKET_TASKS); a bare NAME lists only the tasks of that name",
    )
    parser.add_argument(
        "--stats", action="store_true", help="add task counts by function, as docket's"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(handler=show_snapshot)


def execution_row(execution: Execution) -> dict[str, Any]:
    return {
        "key": execution.key,
        "function": execution.function_name,
        "state": execution.state.value,
        "when": execution.when.isoformat(),
        "attempt": execution.attempt,
        "worker": execution.worker,
        "started_at": execution.started_at.isoformat() if execution.started_at else None,
    }


def as_document(snapshot: DocketSnapshot, names: list[str] | None) -> dict[str, Any]:
    def wanted(execution: Execution) -> bool:
        return names is None or execution.function_name in names

    return {
        "taken": snapshot.taken.isoformat(),
        "total_tasks": snapshot.total_tasks,
        "scheduled": snapshot.scheduled_count,
        "queued": snapshot.queued_count,
        "running": snapshot.running_count,
        "truncated": snapshot.truncated,
        "tasks": [execution_row(e) for e in [*snapshot.running, *snapshot.future] if wanted(e)],
        "workers": [
            {
                "name": w.name,
                "last_seen": w.last_seen.isoformat(),
                "concurrency": w.concurrency,
                "running": w.running,
                "tasks": sorted(w.tasks),
            }
            for w in sorted(snapshot.workers, key=lambda w: w.name)
        ],
    }


def task_options(arguments: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """--tasks (else $DOCKET_TASKS) split into collections to register and names to list."""
    given: list[str] | None = arguments.tasks
    if given is None:
        from_environment = environment("DOCKET_TASKS")
        given = from_environment.split() if from_environment else []
    collections = [each for each in given if ":" in each]
    names = [each for each in given if ":" not in each]
    return collections, names or None


def task_stats(snapshot: DocketSnapshot) -> list[dict[str, Any]]:
    """Per function: how many run, how many wait, and the span of their due times;
    the busiest first, to show a runaway task."""
    by_function: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return by_function.setdefault(
            name,
            {"function": name, "total": 0, "running": 0, "queued": 0,
             "oldest_queued": None, "latest_queued": None},
        )  # fmt: skip

    for running in snapshot.running:
        counts = entry(running.function_name)
        counts["total"] += 1
        counts["running"] += 1
    for execution in snapshot.future:
        counts = entry(execution.function_name)
        counts["total"] += 1
        counts["queued"] += 1
        when = execution.when.isoformat()
        if counts["oldest_queued"] is None or when < counts["oldest_queued"]:
            counts["oldest_queued"] = when
        if counts["latest_queued"] is None or when > counts["latest_queued"]:
            counts["latest_queued"] = when
    return sorted(by_function.values(), key=lambda counts: (-counts["total"], counts["function"]))


async def show_snapshot(arguments: argparse.Namespace) -> int:
    collections, names = task_options(arguments)
    async with docket_from(arguments) as docket:
        for collection in collections:
            try:
                docket.register_collection(collection_path(collection))
            except (ImportError, AttributeError, ValueError, TypeError) as error:
                raise CommandError(f"--tasks {collection!r}: {error}", status=1) from None
        snapshot = await docket.snapshot(limit=arguments.limit)
    document = as_document(snapshot, names)
    if arguments.stats:
        document["stats"] = task_stats(snapshot)
    if arguments.json:
        print(json.dumps(document, indent=2))
        return 0
    now = snapshot.taken
    # docket's title lines, then the exact counts NATS gives besides.
    print(f"Docket: {docket.name!r}")
    print(f"as of {local_time(snapshot.taken)}")
    print(
        f"{len(document['workers'])} workers, "
        f"{document['running']}/{document['total_tasks']} running"
    )
    print(
        f"{document['total_tasks']} tasks ({document['scheduled']} scheduled, "
        f"{document['queued']} queued, {document['running']} running), "
        f"{len(document['workers'])} workers"
    )
    rows = [
        [
            relative(row["when"], now),
            row["function"],
            row["key"],
            row["worker"] or "",
            relative(row["started_at"], now) if row["started_at"] else "",
            row["state"],
        ]
        for row in document["tasks"]
    ]
    if rows:
        print()
        print(table(["WHEN", "FUNCTION", "KEY", "WORKER", "STARTED", "STATE"], rows))
        if snapshot.truncated:
            print(f"(listing cut at --limit {arguments.limit})")
    if document["workers"]:
        print()
        print(
            table(
                ["WORKER", "RUNNING", "CONCURRENCY", "LAST SEEN"],
                [
                    [w["name"], str(w["running"]), str(w["concurrency"]), w["last_seen"]]
                    for w in document["workers"]
                ],
            )
        )
    if arguments.stats and document["stats"]:
        print()
        print("Task Count Statistics by Function")
        print(
            table(
                ["FUNCTION", "TOTAL", "RUNNING", "QUEUED", "OLDEST QUEUED", "LATEST QUEUED"],
                [
                    [
                        counts["function"],
                        str(counts["total"]),
                        str(counts["running"]),
                        str(counts["queued"]),
                        relative(counts["oldest_queued"], now) if counts["oldest_queued"] else "",
                        relative(counts["latest_queued"], now) if counts["latest_queued"] else "",
                    ]
                    for counts in document["stats"]
                ],
            )
        )
    return 0


def local_time(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def relative(when: str, now: datetime) -> str:
    """As docket shows times: `in 0:01:30` / `0:00:05 ago` within half an hour,
    else the local time."""
    moment = datetime.fromisoformat(when)
    ahead = moment - now
    if abs(ahead) >= timedelta(minutes=30):
        return f"at {local_time(moment)}"
    return f"in {ahead}" if ahead > timedelta(0) else f"{-ahead} ago"
