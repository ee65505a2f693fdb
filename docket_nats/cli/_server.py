"""`docket-nats server`: run the embedded nats-server in the foreground."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._embedded import EMBEDDED_PORT, data_directory, embedded_config, nats_server_binary


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "server",
        help="run the embedded nats-server in the foreground",
        description="Run the local nats-server that `Docket()` without a URL uses, "
        "so that several processes share it.",
    )
    parser.add_argument("--port", type=int, default=EMBEDDED_PORT)
    parser.add_argument("--store", default=str(data_directory()), help="JetStream store directory")
    parser.set_defaults(handler=run_server)


async def run_server(arguments: argparse.Namespace) -> int:
    binary = str(nats_server_binary())
    command = [binary, "-c", str(embedded_config()), "-a", "127.0.0.1"]
    command += ["-p", str(arguments.port), "-js", "-sd", arguments.store]
    os.execv(binary, command)  # the server takes over this process (signals, exit code)
