"""`docket-nats worker`: run a worker until SIGTERM / SIGINT.

Every option of docket's `worker` command is here under its name and
environment variable. Those about Redis polling (--message-batch,
--reconnection-delay, --scheduling-resolution, --enable-internal-instrumentation)
are accepted and handed to the Worker, which keeps them for compatibility:
NATS pushes work, so there is nothing to tune.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

from .._metrics_exporter import serve_metrics
from ..worker import Worker
from ._common import (
    CommandError,
    add_docket_options,
    collection_path,
    docket_from,
    duration,
    environment,
    flag_from_environment,
    imported,
)
from ._healthcheck import serve_healthcheck

logger = logging.getLogger("docket_nats.cli")

DEFAULT_TASKS = ["docket_nats.tasks:standard_tasks"]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is smaller than the minimum of 1")
    return value


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run a worker", description="Run a worker until SIGTERM or SIGINT."
    )
    add_docket_options(parser, allow_memory=True)
    parser.add_argument(
        "--tasks",
        action="append",
        default=None,
        metavar="MODULE:ATTR",
        help="a collection of task functions to register (repeatable; $DOCKET_TASKS, "
        "whitespace-separated; default: docket_nats.tasks:standard_tasks)",
    )
    parser.add_argument(
        "--name",
        default=environment("DOCKET_WORKER_NAME"),
        help="worker name ($DOCKET_WORKER_NAME; default: host#pid)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=environment("DOCKET_WORKER_CONCURRENCY") or "10",
        help="tasks run at once ($DOCKET_WORKER_CONCURRENCY; default: 10)",
    )
    parser.add_argument(
        "--redelivery-timeout",
        type=duration,
        default=environment("DOCKET_WORKER_REDELIVERY_TIMEOUT") or "5m",
        metavar="DURATION",
        help="how long a dead worker's tasks wait before another worker runs them "
        "($DOCKET_WORKER_REDELIVERY_TIMEOUT; default: 5m; 90, 90s, 5m, 1h, mm:ss)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=duration,
        default=environment("DOCKET_WORKER_SHUTDOWN_GRACE") or "30",
        metavar="DURATION",
        help="on SIGTERM, how long running tasks get to finish before they are handed "
        "back ($DOCKET_WORKER_SHUTDOWN_GRACE; default: 30s)",
    )
    parser.add_argument(
        "--until-finished",
        action="store_true",
        help="exit once nothing is scheduled, queued or running",
    )
    parser.add_argument(
        "--fallback-task",
        default=environment("DOCKET_FALLBACK_TASK"),
        metavar="MODULE:ATTR",
        help="a task that runs in place of unknown ones ($DOCKET_FALLBACK_TASK; "
        "default: park them as dead letters)",
    )
    parser.add_argument(
        "--dependencies",
        default=environment("DOCKET_WORKER_DEPENDENCIES"),
        metavar="MODULE:ATTR",
        help="a mapping or sequence of dependencies run around every task "
        "($DOCKET_WORKER_DEPENDENCIES)",
    )
    parser.add_argument(
        "--schedule-automatic-tasks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="schedule Perpetual(automatic=True) tasks at start "
        "($DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS; default: yes)",
    )
    parser.add_argument(
        "--healthcheck-port",
        type=int,
        default=environment("DOCKET_WORKER_HEALTHCHECK_PORT"),
        help="answer HTTP GETs with 200 OK on this port while running "
        "($DOCKET_WORKER_HEALTHCHECK_PORT; 0: a free port)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=environment("DOCKET_WORKER_METRICS_PORT"),
        help="serve Prometheus metrics on PORT/metrics ($DOCKET_WORKER_METRICS_PORT; "
        "0: a free port)",
    )
    parser.add_argument(
        "--http-host",
        default=environment("DOCKET_WORKER_HTTP_HOST") or "0.0.0.0",
        help="the address the healthcheck and metrics endpoints listen on "
        "($DOCKET_WORKER_HTTP_HOST; default: 0.0.0.0, every interface, as docket)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept pickled arguments (trusted producers only: unpickling runs code)",
    )
    # docket's knobs for its Redis polling: accepted so that docket's deploy
    # scripts run, kept by the Worker, without effect on NATS (it pushes work).
    parser.add_argument(
        "--message-batch",
        type=positive,
        default=environment("DOCKET_WORKER_MESSAGE_BATCH"),
        help="accepted for docket compatibility; no effect ($DOCKET_WORKER_MESSAGE_BATCH)",
    )
    for option, variable in (
        ("--reconnection-delay", "DOCKET_WORKER_RECONNECTION_DELAY"),
        ("--minimum-check-interval", "DOCKET_WORKER_MINIMUM_CHECK_INTERVAL"),
        ("--scheduling-resolution", "DOCKET_WORKER_SCHEDULING_RESOLUTION"),
    ):
        parser.add_argument(
            option,
            type=duration,
            default=environment(variable),
            metavar="DURATION",
            help=f"accepted for docket compatibility (${variable})"
            + (
                "; paces --until-finished's emptiness check"
                if option == "--minimum-check-interval"
                else "; no effect"
            ),
        )
    parser.add_argument(
        "--enable-internal-instrumentation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accepted for docket compatibility; no effect "
        "($DOCKET_WORKER_ENABLE_INTERNAL_INSTRUMENTATION)",
    )
    parser.set_defaults(handler=run_worker)


def task_collections(arguments: argparse.Namespace) -> list[str]:
    """--tasks, else $DOCKET_TASKS (whitespace-separated, as docket's CLI splits it)."""
    if arguments.tasks:
        return list(arguments.tasks)
    from_environment = environment("DOCKET_TASKS")
    return from_environment.split() if from_environment else DEFAULT_TASKS


def worker_options(arguments: argparse.Namespace) -> dict[str, Any]:
    """The Worker's keyword arguments from the command line (and environment)."""
    options: dict[str, Any] = {
        "name": arguments.name,
        "concurrency": arguments.concurrency,
        "redelivery_timeout": arguments.redelivery_timeout,
        "shutdown_grace": arguments.shutdown_grace,
        "schedule_automatic_tasks": (
            arguments.schedule_automatic_tasks
            if arguments.schedule_automatic_tasks is not None
            else flag_from_environment("DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS", True)
        ),
        "enable_internal_instrumentation": instrumentation(arguments),
    }
    if arguments.fallback_task:
        options["fallback_task"] = imported(arguments.fallback_task, "--fallback-task")
    if arguments.dependencies:
        options["dependencies"] = imported(arguments.dependencies, "--dependencies")
    if arguments.message_batch is not None:
        options["message_batch"] = arguments.message_batch
    for name in ("reconnection_delay", "minimum_check_interval", "scheduling_resolution"):
        value: timedelta | None = getattr(arguments, name)
        if value is not None:
            options[name] = value
    return options


def instrumentation(arguments: argparse.Namespace) -> bool:
    if arguments.enable_internal_instrumentation is not None:
        return bool(arguments.enable_internal_instrumentation)
    return flag_from_environment("DOCKET_WORKER_ENABLE_INTERNAL_INSTRUMENTATION", False)


async def run_worker(arguments: argparse.Namespace) -> int:
    options = worker_options(arguments)
    async with (
        serve_healthcheck(arguments.healthcheck_port, arguments.http_host),
        docket_from(
            arguments,
            lasting=True,
            allow_pickle=arguments.allow_pickle,
            enable_internal_instrumentation=options["enable_internal_instrumentation"],
        ) as docket,
        serve_metrics(docket, arguments.metrics_port, arguments.http_host),
    ):
        for collection in task_collections(arguments):
            try:
                docket.register_collection(collection_path(collection))
            except (ImportError, AttributeError, ValueError, TypeError) as error:
                raise CommandError(f"--tasks {collection!r}: {error}", status=1) from None
        async with Worker(docket, **options) as worker:
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
