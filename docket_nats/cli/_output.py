"""How the commands print: Rich tables on a terminal, plain aligned columns
when piped (for grep and awk), JSON for scripts, and errors as one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

# Piped output is never cut or wrapped at 80 columns: a task key split over two
# lines breaks `grep`. Rich sizes a table to its content, so this is only a cap.
_PIPED_WIDTH = 1000


def stdout_console() -> Console:
    interactive = sys.stdout.isatty()
    return Console(width=None if interactive else _PIPED_WIDTH, highlight=False)


def stderr_console() -> Console:
    interactive = sys.stderr.isatty()
    return Console(stderr=True, width=None if interactive else _PIPED_WIDTH, highlight=False)


def table(headers: Sequence[str], *, title: str | None = None) -> Table:
    """Boxed and coloured on a terminal; bare aligned columns, no border or
    separator line, when piped, so that each line is one row."""
    if sys.stdout.isatty():
        made = Table(title=title, box=box.ROUNDED, header_style="bold cyan", title_style="bold")
    else:
        made = Table(
            title=title, title_justify="left", title_style="",
            box=None, pad_edge=False, show_edge=False, header_style="",
        )  # fmt: skip
    for header in headers:
        made.add_column(header, no_wrap=not sys.stdout.isatty())
    return made


def show(*renderables: RenderableType) -> None:
    console = stdout_console()
    for renderable in renderables:
        console.print(renderable)


def say(line: str) -> None:
    """A plain line, as-is (no markup, no wrapping): what scripts and tests read."""
    print(line, flush=True)


def error_line(message: str, fix: str | None = None) -> None:
    """The one red line an error prints on stderr: what went wrong, then the fix."""
    text = Text("Error: ", style="bold red")
    text.append(message, style="red")
    if fix:
        text.append(f" -- {fix}")
    stderr_console().print(text, soft_wrap=True)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        envvar="DOCKET_FORMAT",
        case_sensitive=False,
        help="table: for people (plain columns when piped); json: for scripts",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="same as --format json")]


def wants_json(output_format: OutputFormat, json_flag: bool) -> bool:
    return json_flag or output_format is OutputFormat.JSON


def json_line(document: Any) -> None:
    print(json.dumps(document), flush=True)


def json_document(document: Any) -> None:
    print(json.dumps(document, indent=2), flush=True)
