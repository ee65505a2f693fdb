"""The fault tests' loopback proxy (deploy/tcp_proxy.py) does what it says."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from deploy.tcp_proxy import tcp_proxy
from docket_nats._embedded import ServerProcess

pytestmark = pytest.mark.timeout(30)


async def round_trip(nc: nats.NATS) -> float:
    """Seconds for one request the server answers itself (no responders)."""
    started = time.monotonic()
    with pytest.raises(NoRespondersError):
        await nc.request("proxy.test.nobody", b"", timeout=2.0)
    return time.monotonic() - started


async def test_delay_black_hole_and_cut(nats_server: ServerProcess) -> None:
    async with tcp_proxy(nats_server.port) as proxy:
        disconnected, reconnected = asyncio.Event(), asyncio.Event()

        async def on_disconnect() -> None:
            disconnected.set()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await nats.connect(  # pyright: ignore[reportUnknownMemberType]
            proxy.url,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            reconnect_time_wait=0.1,
        )
        try:
            assert await round_trip(nc) < 0.2

            proxy.delay(0.2)  # each way
            assert 0.4 <= await round_trip(nc) < 1.0

            proxy.heal()
            proxy.black_hole()
            with pytest.raises(NatsTimeout):
                await nc.request("proxy.test.nobody", b"", timeout=0.5)
            assert nc.is_connected  # nothing tells the client

            proxy.cut()
            proxy.heal()
            async with asyncio.timeout(5):
                await disconnected.wait()
            assert proxy.connections_made == 1
            async with asyncio.timeout(10):
                await reconnected.wait()
            assert await round_trip(nc) < 0.2
            assert proxy.connections_made == 2
        finally:
            await nc.close()
