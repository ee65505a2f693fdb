"""Fixtures: real nats-server processes on 127.0.0.1 (no mocks of NATS)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from docket_nats import Docket, Worker
from docket_nats._embedded import ServerProcess, free_port


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the session; every test gets its own docket name on it."""
    server = ServerProcess(free_port(), tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: ServerProcess) -> str:
    return nats_server.url


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that stop, kill or restart it."""
    server = ServerProcess(free_port(), tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def docket_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def docket(nats_url: str, docket_name: str) -> AsyncIterator[Docket]:
    async with Docket(name=docket_name, url=nats_url) as docket:
        yield docket


@pytest.fixture
async def worker(docket: Docket) -> AsyncIterator[Worker]:
    async with Worker(
        docket,
        redelivery_timeout=timedelta(seconds=5),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    ) as worker:
        yield worker
