"""A loopback TCP proxy for fault injection: delay, drop (black-hole) and cut connections.

Used by the fault tests (tests/worker/test_fencing.py) and deploy/chaos.py; test
tooling, so it lives here and not in the package. Clients connect to the proxy's
port on 127.0.0.1; each connection is forwarded to the target port on 127.0.0.1
(or, when that refuses, to the next of the fallback ports: a cluster's other
nodes). While the proxy runs, a caller can:

- `delay(seconds)`: hold every chunk that long before forwarding it (both ways, order kept);
- `black_hole()`: keep every connection open but discard every byte both ways, and
  accept new connections into the same void: to both ends it looks like a network
  partition, not a closed socket (nothing tells the client the link is gone);
- `heal()`: forward again (a connection that lost bytes is garbage to NATS: `cut`
  it first, with no await in between, so no byte of it gets through);
- `cut()`: close every current connection at once (both ends see it closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

HOST = "127.0.0.1"
CHUNK = 65536


class TcpProxy:
    def __init__(self, target_port: int, *fallback_ports: int) -> None:
        self.target_port = target_port
        self.fallback_ports = fallback_ports
        self.port = 0
        self.delay_seconds = 0.0
        self.dropping = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.connections_made = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds

    def black_hole(self) -> None:
        self.dropping = True

    def heal(self) -> None:
        self.dropping = False
        self.delay_seconds = 0.0

    def cut(self) -> None:
        links, self._links = set(self._links), set()
        for link in links:
            link.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_made += 1
        for port in (self.target_port, *self.fallback_ports):
            try:
                server_r, server_w = await asyncio.open_connection(HOST, port)
                break
            except OSError:
                continue
        else:
            client_w.close()
            return
        link = _Link(self, client_w, server_w)
        self._links.add(link)
        link.start(client_r, server_r)


class _Link:
    """One proxied connection: a pump each way."""

    def __init__(
        self, proxy: TcpProxy, client_w: asyncio.StreamWriter, server_w: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.writers = (client_w, server_w)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, client_r: asyncio.StreamReader, server_r: asyncio.StreamReader) -> None:
        client_w, server_w = self.writers
        self.tasks = [
            asyncio.create_task(self._pump(client_r, server_w)),
            asyncio.create_task(self._pump(server_r, client_w)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while data := await reader.read(CHUNK):
                if self.proxy.dropping:
                    continue  # the black hole
                queue.put_nowait((time.monotonic() + self.proxy.delay_seconds, data))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(BaseException):
                await sender
            self.proxy._links.discard(self)  # pyright: ignore[reportPrivateUsage]
            self.close()

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self.proxy.dropping:
                continue  # black-holed while it was delayed
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return

    def close(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int, *fallback_ports: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port, *fallback_ports)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
