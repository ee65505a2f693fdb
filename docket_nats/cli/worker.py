"""`docket-nats worker`: run a worker until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

from ..metrics_exporter import serve_metrics
from ..worker import Worker
from .common import add_docket_options, docket_from

logger = logging.getLogger("docket_nats.cli")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run a worker", description="Run a worker until SIGTERM or SIGINT."
    )
    add_docket_options(parser)
    parser.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a collection of task functions to register (repeatable)",
    )
    parser.add_argument("--name", default=None, help="worker name (default: host#pid)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--redelivery-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a dead worker's tasks wait before another worker runs them",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running tasks get to finish before they are handed back",
    )
    parser.add_argument(
        "--until-finished",
        action="store_true",
        help="exit once nothing is scheduled, queued or running",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept pickled arguments (trusted producers only: unpickling runs code)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: a free port)",
    )
    parser.set_defaults(handler=run_worker)


async def run_worker(arguments: argparse.Namespace) -> int:
    async with (
        docket_from(arguments, allow_pickle=arguments.allow_pickle) as docket,
        serve_metrics(docket, arguments.metrics_port),
    ):
        for collection in arguments.tasks:
            docket.register_collection(collection)
        async with Worker(
            docket,
            name=arguments.name,
            concurrency=arguments.concurrency,
            redelivery_timeout=timedelta(seconds=arguments.redelivery_timeout),
            shutdown_grace=timedelta(seconds=arguments.shutdown_grace),
        ) as worker:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.stop)
            logger.info(
                "worker %s running %d tasks on docket %r (%s)",
                worker.name,
                len(docket.tasks),
                docket.name,
                ", ".join(sorted(docket.tasks)),
            )
            if arguments.until_finished:
                await worker.run_until_finished()
            else:
                await worker.run_forever()
    return 0
