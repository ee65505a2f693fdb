"""`docket-nats watch KEY`: follow one task's state and progress live.

On a terminal: a live panel (state, worker, times, a progress bar once the
task reports Progress). Piped: one line per change. --format json: one JSON
event per line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from .._state_records import TERMINAL
from ..execution import Execution, ProgressEvent, StateEvent
from ._common import Target, docket_command, docket_from
from ._output import FormatOption, JsonFlag, OutputFormat, say, stdout_console, wants_json
from ._snapshot import STATE_STYLES, local_time

BAR_WIDTH = 30

Event = StateEvent | ProgressEvent


def register(app: typer.Typer) -> None:
    # docket's watch alone reads $DOCKET_REDIS_URL and has -u / -d.
    app.command(
        help="Follow a task's state and progress as they change, until it ends.",
        epilog="Examples: docket-nats watch order-1234; docket-nats watch order-1234 "
        "--format json | jq .state",
    )(
        docket_command(
            url_flags=("--url", "-u"),
            docket_flags=("--docket", "-d"),
            url_environment=("DOCKET_REDIS_URL", "DOCKET_URL"),
            allow_memory=True,
        )(watch)
    )


def watch(
    target: Target,
    key: Annotated[str, typer.Argument(help="the task key")],
    output_format: FormatOption = OutputFormat.TABLE,
    json_flag: JsonFlag = False,
) -> None:
    if wants_json(output_format, json_flag):
        view: View = JsonLines()
    elif stdout_console().is_terminal:
        view = LivePanel(key)
    else:
        view = PlainLines()
    asyncio.run(follow(target, key, view))


class View:
    """How `follow` shows the events of one execution."""

    def start(self, execution: Execution) -> None: ...

    def update(self, event: Event) -> None: ...

    def stop(self) -> None: ...


async def follow(target: Target, key: str, view: View) -> None:
    async with docket_from(target, lasting=True) as docket:
        execution = await docket.get_execution(key)
        if execution is None:
            # docket's message and exit status (0): nothing to watch is not a failure.
            say(f"Error: Task with key '{key}' not found or function not registered")
            return
        view.start(execution)
        try:
            async for event in until_finished(execution):
                view.update(event)
        finally:
            view.stop()


async def until_finished(execution: Execution) -> AsyncIterator[Event]:
    async for event in execution.subscribe():
        yield event
        if event["type"] == "state" and event["state"] in TERMINAL:
            return


class JsonLines(View):
    def update(self, event: Event) -> None:
        document = {**event, "state": event["state"].value} if event["type"] == "state" else event
        print(json.dumps(document), flush=True)


class PlainLines(View):
    def update(self, event: Event) -> None:
        say(describe(event))


def describe(event: Event) -> str:
    if event["type"] == "state":
        worker = f" on {event['worker']}" if event["worker"] else ""
        error = f": {event['error']}" if event["error"] else ""
        return f"{event['state'].value}{worker}{error}"
    if event["current"] is None:
        return "no progress reported"
    done = min(1.0, event["current"] / max(1, event["total"]))
    filled = round(done * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    message = f" {event['message']}" if event["message"] else ""
    return f"[{bar}] {event['current']}/{event['total']}{message}"


@dataclass
class LivePanel(View):
    """A panel redrawn in place: the latest state, and a progress bar once the
    task reports progress."""

    key: str
    function: str = ""
    fields: dict[str, str] = field(default_factory=dict[str, str])
    state: str = "unknown"
    progress: Progress = field(
        default_factory=lambda: Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            expand=True,
        )
    )
    bar: TaskID | None = None
    live: Live | None = None

    def start(self, execution: Execution) -> None:
        self.function = execution.function_name
        self.live = Live(self.render(), console=stdout_console(), refresh_per_second=8)
        self.live.start()

    def update(self, event: Event) -> None:
        if event["type"] == "state":
            self.state = event["state"].value
            for name, text in (("worker", event["worker"]), ("error", event["error"])):
                if text:
                    self.fields[name] = text
            for name, moment in (
                ("when", event["when"]),
                ("started_at", event["started_at"]),
                ("completed_at", event["completed_at"]),
            ):
                if moment:
                    self.fields[name] = local_time(datetime.fromisoformat(moment))
        elif event["current"] is not None:
            description = event["message"] or "progress"
            if self.bar is None:
                self.bar = self.progress.add_task(description, total=event["total"])
            self.progress.update(
                self.bar, completed=event["current"], total=event["total"], description=description
            )
        if self.live is not None:
            self.live.update(self.render())

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.stop()

    def render(self) -> Panel:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        facts.add_row("state", Text(self.state, style=STATE_STYLES.get(self.state, "")))
        for name in ("worker", "when", "started_at", "completed_at", "error"):
            if name in self.fields:
                facts.add_row(name.replace("_", " "), self.fields[name])
        body = Group(facts, self.progress) if self.bar is not None else facts
        return Panel(body, title=f"{self.function} [dim]{self.key}[/dim]", title_align="left")
