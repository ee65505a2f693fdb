"""`worker --healthcheck-port`: an HTTP endpoint that answers 200 OK while the worker runs.

As docket's: any GET, any path, the body `OK`; orchestrators (a Kubernetes
liveness probe, a load balancer) need nothing more than the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

logger = logging.getLogger("docket_nats.cli")

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\nOK"
)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve_healthcheck(port: int | None, host: str) -> AsyncGenerator[int | None]:
    """Answer on `port` (0: a free one) while the block runs; None: no-op.

    Yields the port actually bound.
    """
    if port is None:
        yield None
        return
    server = await asyncio.start_server(_answer, host, port)
    bound: int = server.sockets[0].getsockname()[1]
    logger.info("serving the healthcheck on http://%s:%d/", host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
