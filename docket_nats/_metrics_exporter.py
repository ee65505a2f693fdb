"""The Prometheus endpoint of a worker process: `/metrics` over HTTP.

Renders the process's task metrics (`metrics.registry`) plus what is read from
JetStream when scraped, never counted by hand: queue depth, schedule depth and
consumer lag, and the strikes in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError

from ._metrics import registry

if TYPE_CHECKING:
    from .docket import Docket

logger = logging.getLogger("docket_nats.metrics")


async def depths(docket: Docket) -> dict[str, dict[str, int]]:
    """Queue depth, schedule depth and consumer lag from JetStream; strikes in effect."""
    js = docket.connection.js
    info = await js.stream_info(docket.names.stream)
    try:
        consumer = await js.consumer_info(docket.names.stream, docket.names.consumer)
        lag = consumer.num_pending or 0
        runnable = lag + (consumer.num_ack_pending or 0)
    except NotFoundError:
        lag = runnable = 0
    name = docket.name
    return {
        "docket_queue_depth": {name: runnable},
        "docket_schedule_depth": {name: max(0, info.state.messages - runnable)},
        "docket_consumer_lag": {name: lag},
        "docket_strikes_in_effect": {name: len(docket.strike_list.rules())},
    }


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

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] != b"/metrics":
                status, body = "404 Not Found", b"not found\n"
            else:
                try:
                    measured = await depths(docket)
                except Exception as error:  # scrape what we have while NATS is away
                    logger.warning("could not read queue depths: %s", error)
                    measured = {}
                status, body = "200 OK", registry.render(measured).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound: int = server.sockets[0].getsockname()[1]
    logger.info("serving metrics on http://%s:%d/metrics", host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
