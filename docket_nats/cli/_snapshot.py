"""`docket-nats snapshot`: counts, the waiting and running tasks, the workers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.text import Text

from .._snapshot import DocketSnapshot
from ..execution import Execution
from ._common import Target, docket_command, docket_from, register_collections
from ._output import (
    FormatOption,
    JsonFlag,
    OutputFormat,
    json_document,
    say,
    show,
    table,
    wants_json,
)

STATE_STYLES = {
    "scheduled": "yellow",
    "queued": "cyan",
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def register(app: typer.Typer) -> None:
    app.command(
        help="Show how many tasks are scheduled, queued and running, list them (up to "
        "--limit), and the live workers.",
        epilog="Examples: docket-nats snapshot --stats; docket-nats snapshot --tasks "
        "send_email --format json; docket-nats snapshot --tasks myapp.tasks:tasks",
    )(docket_command()(snapshot))


def snapshot(
    target: Target,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            envvar="DOCKET_TASKS",
            metavar="TASKS",
            help="MODULE:ATTR registers a task collection, as docket's; a bare NAME lists "
            "only the tasks of that name (repeatable; whitespace-separated in $DOCKET_TASKS)",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="DOCKET_SNAPSHOT_LIMIT", help="list at most this many tasks")
    ] = 100,
    stats: Annotated[
        bool,
        typer.Option("--stats", envvar="DOCKET_SNAPSHOT_STATS", help="add task counts by function"),
    ] = False,
    output_format: FormatOption = OutputFormat.TABLE,
    json_flag: JsonFlag = False,
) -> None:
    given = tasks or []
    collections = [each for each in given if ":" in each]
    names = [each for each in given if ":" not in each] or None
    taken = asyncio.run(take(target, collections, limit))
    document = as_document(taken, names)
    if stats:
        document["stats"] = task_stats(taken)
    if wants_json(output_format, json_flag):
        json_document(document)
    else:
        render(target, taken, document, limit)


async def take(target: Target, collections: list[str], limit: int) -> DocketSnapshot:
    async with docket_from(target) as docket:
        register_collections(docket, collections)
        return await docket.snapshot(limit=limit)


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
        "groups": [
            {"key": g.key, "done": g.done, "failed": g.failed, "total": g.total}
            for g in snapshot.groups
        ],
    }


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


def render(target: Target, taken: DocketSnapshot, document: dict[str, Any], limit: int) -> None:
    now = taken.taken
    workers = document["workers"]
    # docket's title lines, then the exact counts NATS gives besides.
    show(
        Text(f"Docket: {target.name!r}", style="bold"),
        f"as of {local_time(now)}",
        f"{len(workers)} workers, {document['running']}/{document['total_tasks']} running",
        f"{document['total_tasks']} tasks ({document['scheduled']} scheduled, "
        f"{document['queued']} queued, {document['running']} running), {len(workers)} workers",
    )
    if document["tasks"]:
        tasks = table(["WHEN", "FUNCTION", "KEY", "WORKER", "STARTED", "STATE"])
        for row in document["tasks"]:
            tasks.add_row(
                relative(row["when"], now),
                row["function"],
                row["key"],
                row["worker"] or "",
                relative(row["started_at"], now) if row["started_at"] else "",
                Text(row["state"], style=STATE_STYLES.get(row["state"], "")),
            )
        show("", tasks)
        if taken.truncated:
            say(f"(listing cut at --limit {limit})")
    if workers:
        listing = table(["WORKER", "RUNNING", "CONCURRENCY", "LAST SEEN"])
        for worker in workers:
            listing.add_row(
                worker["name"], str(worker["running"]), str(worker["concurrency"]),
                relative(worker["last_seen"], now),
            )  # fmt: skip
        show("", listing)
    if document.get("groups"):
        groups = table(["GROUP", "DONE", "FAILED", "TOTAL"], title="Groups in flight")
        for group in document["groups"]:
            groups.add_row(
                group["key"], str(group["done"]), str(group["failed"]), str(group["total"])
            )
        show("", groups)
    if document.get("stats"):
        counts_table = table(
            ["FUNCTION", "TOTAL", "RUNNING", "QUEUED", "OLDEST QUEUED", "LATEST QUEUED"],
            title="Task Count Statistics by Function",
        )
        for counts in document["stats"]:
            counts_table.add_row(
                counts["function"],
                str(counts["total"]),
                str(counts["running"]),
                str(counts["queued"]),
                relative(counts["oldest_queued"], now) if counts["oldest_queued"] else "",
                relative(counts["latest_queued"], now) if counts["latest_queued"] else "",
            )
        show("", counts_table)


def local_time(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def relative(when: str, now: datetime) -> str:
    """As docket shows times: `in 0:01:30` / `0:00:05 ago` within half an hour,
    else the local time."""
    moment = datetime.fromisoformat(when)
    # Whole seconds: microseconds are noise in a table read by people.
    ahead = timedelta(seconds=round((moment - now).total_seconds()))
    if abs(ahead) >= timedelta(minutes=30):
        return f"at {local_time(moment)}"
    return f"in {ahead}" if ahead > timedelta(0) else f"{-ahead} ago"
