"""`docket-nats server`: run the embedded nats-server in the foreground."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .._embedded import EMBEDDED_PORT, data_directory, embedded_config, nats_server_binary


def register(app: typer.Typer) -> None:
    app.command(
        help="Run the local nats-server that `Docket()` without a URL uses, so that "
        "several processes share it.",
        epilog="Example: docket-nats server --port 4333 --store /var/lib/docket-nats",
    )(server)


def server(
    port: Annotated[
        int, typer.Option(envvar="DOCKET_SERVER_PORT", help="the port to listen on (127.0.0.1)")
    ] = EMBEDDED_PORT,
    store: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKET_SERVER_STORE",
            help="JetStream store directory",
            show_default=str(data_directory()),
        ),
    ] = None,
) -> None:
    binary = str(nats_server_binary())
    command = [binary, "-c", str(embedded_config()), "-a", "127.0.0.1"]
    command += ["-p", str(port), "-js", "-sd", store or str(data_directory())]
    os.execv(binary, command)  # the server takes over this process (signals, exit code)
