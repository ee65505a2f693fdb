"""A bare HTTP GET to a port on 127.0.0.1 (the worker's /metrics and health check)."""

from __future__ import annotations

import asyncio


async def http_get(port: int, path: str = "/") -> tuple[int, str]:
    """The status code and body of `GET path`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body
