"""`docket-nats worker`: run a worker until SIGTERM / SIGINT.

Every option of docket's `worker` command is here under its name and
environment variable. Those about Redis polling (--message-batch,
--reconnection-delay, --scheduling-resolution, --enable-internal-instrumentation)
are accepted and handed to the Worker, which keeps them for compatibility:
NATS pushes work, so there is nothing to tune.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import typer

from .._embedded import MEMORY_SCHEME
from .._metrics import multiprocess_directory
from .._metrics_exporter import serve_metrics
from ..docket import Docket
from ..worker import Worker
from ._common import (
    CommandError,
    Target,
    docket_command,
    docket_from,
    duration,
    imported,
    register_collections,
)
from ._healthcheck import serve_healthcheck
from ._pool import Pool, PoolSettings, forwarded_arguments, resolve_processes
from ._supervisor_pipe import SupervisorWatch

logger = logging.getLogger("docket_nats.cli")

DEFAULT_TASKS = ["docket_nats.tasks:standard_tasks"]


def at_least_one(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value} is smaller than the minimum of 1")
    return value


def at_least_zero(value: int) -> int:
    if value < 0:
        raise typer.BadParameter(f"{value} is smaller than the minimum of 0 (0: one per core)")
    return value


def register(app: typer.Typer) -> None:
    app.command(
        help="Run a worker until SIGTERM or SIGINT.",
        epilog=EXAMPLES,
    )(docket_command(allow_memory=True)(worker))


EXAMPLES = """\
Examples:

  docket-nats worker --tasks myapp.tasks:tasks --concurrency 20

  DOCKET_URL=nats://nats:4222 DOCKET_TASKS=myapp.tasks:tasks docket-nats worker

  docket-nats worker --until-finished --healthcheck-port 8080 --metrics-port 9090

  docket-nats worker --processes 0 --metrics-port 9090   # one process per core
"""

COMPATIBILITY = "docket compatibility (no effect on NATS)"


def _duration_option(variable: str, help: str, panel: str | None = None) -> Any:
    return typer.Option(
        parser=duration, envvar=variable, metavar="DURATION", help=help, rich_help_panel=panel
    )


def worker(
    target: Target,
    context: typer.Context,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            envvar="DOCKET_TASKS",
            metavar="MODULE:ATTR",
            show_default=DEFAULT_TASKS[0],
            help="a collection of task functions to register (repeatable; "
            "whitespace-separated in $DOCKET_TASKS)",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(envvar="DOCKET_WORKER_NAME", show_default="host#pid", help="worker name"),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(envvar="DOCKET_WORKER_CONCURRENCY", help="tasks run at once")
    ] = 10,
    processes: Annotated[
        int,
        typer.Option(
            envvar="DOCKET_WORKER_PROCESSES",
            callback=at_least_zero,
            help="worker processes under one supervisor (0: one per core; "
            "1: this process is the worker)",
        ),
    ] = 1,
    redelivery_timeout: Annotated[
        timedelta,
        _duration_option(
            "DOCKET_WORKER_REDELIVERY_TIMEOUT",
            "how long a dead worker's tasks wait before another worker runs them",
        ),
    ] = timedelta(minutes=5),
    shutdown_grace: Annotated[
        timedelta,
        _duration_option(
            "DOCKET_WORKER_SHUTDOWN_GRACE",
            "on SIGTERM, how long running tasks get to finish before they are handed back",
        ),
    ] = timedelta(seconds=30),
    until_finished: Annotated[
        bool,
        typer.Option(
            "--until-finished",
            envvar="DOCKET_WORKER_UNTIL_FINISHED",
            help="exit once nothing is scheduled, queued or running",
        ),
    ] = False,
    fallback_task: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKET_FALLBACK_TASK",
            metavar="MODULE:ATTR",
            show_default="park them as dead letters",
            help="a task that runs in place of unknown ones",
        ),
    ] = None,
    dependencies: Annotated[
        str | None,
        typer.Option(
            envvar="DOCKET_WORKER_DEPENDENCIES",
            metavar="MODULE:ATTR",
            help="a mapping or sequence of dependencies run around every task",
        ),
    ] = None,
    schedule_automatic_tasks: Annotated[
        bool,
        typer.Option(
            "--schedule-automatic-tasks/--no-schedule-automatic-tasks",
            envvar="DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS",
            help="schedule Perpetual(automatic=True) tasks at start",
        ),
    ] = True,
    healthcheck_port: Annotated[
        int | None,
        typer.Option(
            envvar="DOCKET_WORKER_HEALTHCHECK_PORT",
            help="answer HTTP GETs with 200 OK on this port while running (0: a free port)",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="DOCKET_WORKER_METRICS_PORT",
            help="serve Prometheus metrics on PORT/metrics (0: a free port)",
        ),
    ] = None,
    http_host: Annotated[
        str,
        typer.Option(
            envvar="DOCKET_WORKER_HTTP_HOST",
            help="the address the healthcheck and metrics endpoints listen on "
            "(every interface by default, as docket)",
        ),
    ] = "0.0.0.0",
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            envvar="DOCKET_ALLOW_PICKLE",
            help="accept pickled arguments (trusted producers only: unpickling runs code)",
        ),
    ] = False,
    # docket's knobs for its Redis polling: accepted so that docket's deploy
    # scripts run, kept by the Worker, without effect on NATS (it pushes work).
    message_batch: Annotated[
        int | None,
        typer.Option(
            envvar="DOCKET_WORKER_MESSAGE_BATCH",
            callback=at_least_one,
            rich_help_panel=COMPATIBILITY,
            help="accepted for docket compatibility; no effect",
        ),
    ] = None,
    reconnection_delay: Annotated[
        timedelta | None,
        _duration_option(
            "DOCKET_WORKER_RECONNECTION_DELAY", "accepted for docket compatibility", COMPATIBILITY
        ),
    ] = None,
    minimum_check_interval: Annotated[
        timedelta | None,
        _duration_option(
            "DOCKET_WORKER_MINIMUM_CHECK_INTERVAL",
            "paces --until-finished's emptiness check",
            COMPATIBILITY,
        ),
    ] = None,
    scheduling_resolution: Annotated[
        timedelta | None,
        _duration_option(
            "DOCKET_WORKER_SCHEDULING_RESOLUTION",
            "accepted for docket compatibility",
            COMPATIBILITY,
        ),
    ] = None,
    enable_internal_instrumentation: Annotated[
        bool,
        typer.Option(
            "--enable-internal-instrumentation/--no-enable-internal-instrumentation",
            envvar="DOCKET_WORKER_ENABLE_INTERNAL_INSTRUMENTATION",
            rich_help_panel=COMPATIBILITY,
            help="accepted for docket compatibility",
        ),
    ] = False,
) -> None:
    options: dict[str, Any] = {
        "name": name,
        "concurrency": concurrency,
        "redelivery_timeout": redelivery_timeout,
        "shutdown_grace": shutdown_grace,
        "schedule_automatic_tasks": schedule_automatic_tasks,
        "enable_internal_instrumentation": enable_internal_instrumentation,
    }
    if fallback_task:
        options["fallback_task"] = imported(fallback_task, "--fallback-task")
    if dependencies:
        options["dependencies"] = imported(dependencies, "--dependencies")
    if message_batch is not None:
        options["message_batch"] = message_batch
    for option, value in (
        ("reconnection_delay", reconnection_delay),
        ("minimum_check_interval", minimum_check_interval),
        ("scheduling_resolution", scheduling_resolution),
    ):
        if value is not None:
            options[option] = value
    settings = Settings(
        collections=tasks or DEFAULT_TASKS,
        until_finished=until_finished,
        healthcheck_port=healthcheck_port,
        metrics_port=metrics_port,
        http_host=http_host,
        allow_pickle=allow_pickle,
    )
    processes = resolve_processes(processes)
    if processes == 1:
        asyncio.run(run_worker(target, settings, options))
        return
    if target.url is not None and target.url.startswith(MEMORY_SCHEME):
        raise CommandError(
            "--processes: a memory:// docket lives in one process; a pool needs a shared server",
            fix="give --url nats://HOST:4222, or none for the embedded local server",
        )
    pool = PoolSettings(
        processes=processes,
        name=name or f"{socket.gethostname()}#{os.getpid()}",
        arguments=forwarded_arguments(context),
        until_finished=until_finished,
        shutdown_grace=shutdown_grace,
    )
    asyncio.run(run_pool(target, settings, options, pool))


@dataclass(frozen=True)
class Settings:
    """What the command does around the Worker (its own options go to Worker())."""

    collections: list[str]
    until_finished: bool
    healthcheck_port: int | None
    metrics_port: int | None
    http_host: str
    allow_pickle: bool


async def run_worker(target: Target, settings: Settings, options: dict[str, Any]) -> None:
    # SIGTERM/SIGINT, or in a pool the supervisor's end, stop the worker; before
    # it runs (connecting, creating consumers) there is nothing to hand back, so
    # the start is cancelled. The handlers go in first: a signal in the start-up
    # must not fall to the default action (killed, exit -15).
    starting = asyncio.current_task()
    assert starting is not None
    running: list[Worker] = []
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        if running:
            running[0].stop()
        else:
            starting.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    supervisor = SupervisorWatch.from_environment()
    if supervisor is not None:
        supervisor.start(stop)
    try:
        await _run_worker(target, settings, options, running)
    except asyncio.CancelledError:
        if not stopped:
            raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _run_worker(
    target: Target, settings: Settings, options: dict[str, Any], running: list[Worker]
) -> None:
    async with (
        serve_healthcheck(settings.healthcheck_port, settings.http_host),
        _docket(target, settings, options) as docket,
        serve_metrics(docket, settings.metrics_port, settings.http_host),
    ):
        register_collections(docket, settings.collections)
        async with Worker(docket, **options) as worker:
            running.append(worker)
            logger.info(
                "worker %s running %d tasks on docket %r (%s)",
                worker.name,
                len(docket.tasks),
                docket.name,
                ", ".join(sorted(docket.tasks)),
            )
            if settings.until_finished:
                await worker.run_until_finished()
            else:
                await worker.run_forever()


def _docket(target: Target, settings: Settings, options: dict[str, Any]) -> Docket:
    return docket_from(
        target,
        lasting=True,
        allow_pickle=settings.allow_pickle,
        enable_internal_instrumentation=options["enable_internal_instrumentation"],
    )


async def run_pool(
    target: Target, settings: Settings, options: dict[str, Any], pool_settings: PoolSettings
) -> None:
    """The supervisor of `--processes N`: one healthcheck and one /metrics for
    the pool (the sum over the children, in prometheus-client's multi-process
    mode), the children's settings and tasks checked once before any starts."""
    killed = 0
    async with (
        serve_healthcheck(settings.healthcheck_port, settings.http_host),
        _docket(target, settings, options) as docket,
    ):
        register_collections(docket, settings.collections)
        Worker(docket, **options)  # raises what a child would on its settings
        with _summed_metrics(settings.metrics_port is not None) as directory:
            async with serve_metrics(docket, settings.metrics_port, settings.http_host):
                pool = Pool(pool_settings, directory)
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, pool.stop, signum)
                logger.info(
                    "running %d worker processes on docket %r", pool_settings.processes, docket.name
                )
                killed = await pool.run()
    if killed:
        raise CommandError(
            f"{killed} worker process(es) did not stop within the shutdown grace: killed",
            status=1,
        )


@contextlib.contextmanager
def _summed_metrics(wanted: bool) -> Generator[str | None]:
    """The directory of prometheus-client's multi-process mode, for this process
    (its /metrics serves the sum) and the children: the user's own (from
    $PROMETHEUS_MULTIPROC_DIR, left alone), else, when `wanted`, a temporary one
    removed at the end; None when there is none."""
    directory = multiprocess_directory()
    if directory is not None or not wanted:
        yield directory
        return
    directory = tempfile.mkdtemp(prefix="docket-pool-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield directory
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)
