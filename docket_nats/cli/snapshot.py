"""`docket-nats snapshot`: counts, the waiting and running tasks, the workers."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from ..execution import Execution
from ..snapshot import DocketSnapshot
from .common import add_docket_options, docket_from
from .render import table


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "snapshot",
        help="show the docket's tasks and workers",
        description="Show how many tasks are scheduled, queued and running, list them "
        "(up to --limit of each), and the live workers.",
    )
    add_docket_options(parser)
    parser.add_argument("--limit", type=int, default=100, help="list at most this many tasks")
    parser.add_argument("--tasks", nargs="*", default=None, help="list only these task names")
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


async def show_snapshot(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments) as docket:
        snapshot = await docket.snapshot(limit=arguments.limit)
    document = as_document(snapshot, arguments.tasks)
    if arguments.json:
        print(json.dumps(document, indent=2))
        return 0
    now = datetime.now(UTC)
    print(
        f"Docket {docket.name!r} at {snapshot.taken:%Y-%m-%d %H:%M:%S} UTC: "
        f"{document['total_tasks']} tasks ({document['scheduled']} scheduled, "
        f"{document['queued']} queued, {document['running']} running), "
        f"{len(document['workers'])} workers"
    )
    rows = [
        [
            row["state"],
            row["key"],
            row["function"],
            _relative(row["when"], now),
            row["worker"] or "-",
        ]
        for row in document["tasks"]
    ]
    if rows:
        print()
        print(table(["STATE", "KEY", "FUNCTION", "WHEN", "WORKER"], rows))
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
    return 0


def _relative(when: str, now: datetime) -> str:
    seconds = (datetime.fromisoformat(when) - now).total_seconds()
    return f"in {seconds:.1f}s" if seconds > 0 else f"{-seconds:.1f}s ago"
