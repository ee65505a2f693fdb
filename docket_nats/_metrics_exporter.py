"""The Prometheus endpoint of a worker process: `/metrics` over HTTP.

prometheus-client's WSGI app, on a threaded server of the standard library
(prometheus-client's own, but answering 404 off `/metrics`), serves the task
metrics (`_metrics.registry`, in prometheus-client's default registry) plus what
is read from JetStream when scraped, never counted by hand: queue depth,
schedule depth and consumer lag, and the strikes in effect.

With `PROMETHEUS_MULTIPROC_DIR` set (prometheus-client's multi-process mode),
the endpoint serves the sum over every process that writes to that directory
instead, the way prometheus-client documents it: a registry of its own with a
`MultiProcessCollector`, never the default registry (that would count this
process twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any, cast
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY, CollectorRegistry, exposition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from ._metrics import multiprocess_directory
from ._subjects import LEVELS

if TYPE_CHECKING:
    from .docket import Docket

logger = logging.getLogger("docket_nats.metrics")

DEPTH_GAUGES = {
    "docket_queue_depth": "How many tasks are due to be executed now",
    "docket_schedule_depth": "How many tasks are scheduled for the future",
    "docket_consumer_lag": "Runnable tasks not yet delivered to any worker",
    "docket_strikes_in_effect": "How many strikes are currently in effect",
}
# A scrape waits this long for JetStream, then serves what it has without depths.
DEPTH_READ_TIMEOUT = 5.0


async def depths(docket: Docket) -> dict[str, dict[str, int]]:
    """Queue depth, schedule depth and consumer lag from JetStream; strikes in effect."""
    js = docket.connection.js
    info = await js.stream_info(docket.names.stream)
    lag = runnable = 0
    for level in LEVELS:  # one consumer per priority level
        try:
            consumer = await js.consumer_info(
                docket.names.stream, docket.names.level_consumer(level)
            )
        except NotFoundError:
            continue
        lag += consumer.num_pending or 0
        runnable += (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
    name = docket.name
    return {
        "docket_queue_depth": {name: runnable},
        "docket_schedule_depth": {name: max(0, info.state.messages - runnable)},
        "docket_consumer_lag": {name: lag},
        "docket_strikes_in_effect": {name: len(docket.strike_list.rules())},
    }


class DepthCollector:
    """The gauges read from JetStream at scrape time.

    Scrapes run on the HTTP server's thread; the NATS connection belongs to the
    event loop, so the reads are handed to the loop and awaited from here."""

    def __init__(self, docket: Docket, loop: asyncio.AbstractEventLoop) -> None:
        self.docket = docket
        self.loop = loop

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(depths(self.docket), self.loop)
        try:
            measured = future.result(timeout=DEPTH_READ_TIMEOUT)
        except Exception as error:  # scrape what we have while NATS is away
            future.cancel()
            logger.warning("could not read queue depths: %r", error)
            measured = {}
        for name, help_text in DEPTH_GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=["docket"])
            for docket_name, value in measured.get(name, {}).items():
                family.add_metric([docket_name], value)
            yield family


def served_registry(docket: Docket, loop: asyncio.AbstractEventLoop) -> CollectorRegistry:
    """What one endpoint serves: this process's metrics (or, in multi-process
    mode, every process's) and the docket's depths."""
    served = CollectorRegistry()
    directory = multiprocess_directory()
    if directory is not None:
        MultiProcessCollector(served, directory)  # type: ignore[no-untyped-call]  # registers itself
    else:
        served.register(REGISTRY)
    served.register(DepthCollector(docket, loop))
    return served


def metrics_only(app: WSGIApplication) -> WSGIApplication:
    """`app` on /metrics; 404 elsewhere (prometheus-client's app answers any path)."""

    def routed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return app(environ, start_response)

    return routed


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def http_server(host: str, port: int, app: WSGIApplication) -> exposition.ThreadingWSGIServer:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(exposition.ThreadingWSGIServer):
        address_family = family  # IPv6 hosts too

    return make_server(host, port, app, Server, handler_class=QuietHandler)


@contextlib.asynccontextmanager
async def serve_metrics(
    docket: Docket, port: int | None, host: str = "127.0.0.1"
) -> AsyncGenerator[int | None]:
    """Serve /metrics on `port` (0: a free one) while the block runs; None: no-op.

    Yields the port actually bound.
    """
    if port is None:
        yield None
        return
    served = served_registry(docket, asyncio.get_running_loop())
    # Untyped in prometheus-client: it is a WSGI app.
    app = cast(WSGIApplication, exposition.make_wsgi_app(served))  # pyright: ignore[reportUnknownMemberType]
    server = http_server(host, port, metrics_only(app))
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    bound = server.server_port
    logger.info("serving metrics on http://%s:%d/metrics", host, bound)
    try:
        yield bound
    finally:
        # shutdown() waits for the serving loop to notice (up to half a second):
        # off the event loop, which a scrape in progress may be waiting on.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join()
