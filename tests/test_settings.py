"""Docket and Worker settings that cannot work fail when they are built (or, for
an unreachable server, when the Docket is entered, after a bounded time), with a
message naming the setting."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from docket_nats import Docket, Worker
from docket_nats._connection import NATSUnreachable
from docket_nats._embedded import free_port

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"name": "no spaces please"}, ValueError, "invalid docket name 'no spaces please'"),
        ({"name": ""}, ValueError, "invalid docket name ''"),
        ({"url": "redis://localhost:6379/0"}, ValueError, "is not a NATS server URL (redis://)"),
        ({"url": ["nats://127.0.0.1:4222", "rediss://x"]}, ValueError, "'rediss://x'"),
        ({"url": "nats://127.0.0.1:4222,"}, ValueError, "names no server"),
        ({"heartbeat_interval": timedelta(0)}, ValueError, "heartbeat_interval must be longer"),
        ({"heartbeat_interval": 2}, TypeError, "heartbeat_interval must be a datetime.timedelta"),
        ({"missed_heartbeats": 0}, ValueError, "missed_heartbeats must be at least 1, got 0"),
        (
            {"execution_ttl": timedelta(seconds=-1)},
            ValueError,
            "execution_ttl must not be negative",
        ),
        ({"replicas": 0}, ValueError, "replicas must be at least 1, got 0"),
    ],
)
def test_docket_refuses_a_setting_that_cannot_work(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        Docket(**settings)
    assert message in str(raised.value)


def test_docket_accepts_its_edge_values(nats_url: str) -> None:
    Docket(name="edge", url=nats_url, execution_ttl=timedelta(0), missed_heartbeats=1)
    Docket(name="edge", url="memory://edge")
    Docket(name="edge", url=["nats://a:4222", "tls://b:4222", "c:4222"])


async def test_an_unreachable_server_fails_the_start_after_a_bounded_time() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    docket = Docket(name="unreachable", url=url, connect_options={"first_connect_timeout": 1})
    started = time.monotonic()
    with pytest.raises(ConnectionError) as raised:
        async with docket:
            pass
    assert time.monotonic() - started < 10
    assert isinstance(raised.value, NATSUnreachable)
    text = str(raised.value)
    assert url in text
    assert "first_connect_timeout" in text
    assert "Connect call failed" in text  # the last error says why
    with pytest.raises(RuntimeError, match="not connected"):
        _ = docket.connection.nc


async def test_a_reachable_server_is_unaffected_by_the_first_connect_bound(nats_url: str) -> None:
    async with Docket(
        name="reachable", url=nats_url, connect_options={"first_connect_timeout": 5}
    ) as docket:
        assert docket.connection.nc.is_connected


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"concurrency": 0}, ValueError, "concurrency must be at least 1, got 0"),
        ({"concurrency": -3}, ValueError, "concurrency must be at least 1, got -3"),
        ({"concurrency": "10"}, TypeError, "concurrency must be an int, got str"),
        ({"redelivery_timeout": timedelta(0)}, ValueError, "redelivery_timeout must be longer"),
        ({"redelivery_timeout": 300}, TypeError, "redelivery_timeout must be a datetime.timedelta"),
        ({"shutdown_grace": timedelta(seconds=-1)}, ValueError, "shutdown_grace must not be"),
        ({"reconnection_delay": timedelta(seconds=-1)}, ValueError, "reconnection_delay must"),
        ({"minimum_check_interval": timedelta(-1)}, ValueError, "minimum_check_interval must"),
        ({"scheduling_resolution": timedelta(-1)}, ValueError, "scheduling_resolution must"),
        ({"message_batch": 0}, ValueError, "message_batch must be at least 1, got 0"),
        ({"max_deliveries": 0}, ValueError, "max_deliveries must be at least 1, got 0"),
        ({"prefetch": -1}, ValueError, "prefetch must not be negative, got -1"),
    ],
)
def test_worker_refuses_a_setting_that_cannot_work(
    nats_url: str, settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    docket = Docket(name="settings", url=nats_url)  # never entered: checked when built
    with pytest.raises(error) as raised:
        Worker(docket, **settings)
    assert message in str(raised.value)


def test_worker_accepts_its_edge_values(nats_url: str) -> None:
    docket = Docket(name="settings", url=nats_url)
    worker = Worker(
        docket,
        concurrency=1,
        shutdown_grace=timedelta(0),
        minimum_check_interval=timedelta(0),
        prefetch=0,
        message_batch=1,
        max_deliveries=1,
    )
    assert worker.slots is not None
    assert Worker(docket).message_batch == 1000  # docket's default
