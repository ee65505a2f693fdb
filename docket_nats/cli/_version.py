"""`docket-nats version`: the installed version."""

from __future__ import annotations

import typer

from ._output import say


def register(app: typer.Typer) -> None:
    app.command(help="Print docket-nats's version.")(version)


def version() -> None:
    from .. import __version__

    say(__version__)
