"""Fixtures: real nats-server processes on 127.0.0.1 (no mocks of NATS)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from docket_nats import Docket, Worker
from docket_nats._embedded import ServerProcess, free_port


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Undo what a test's in-process CLI run did to the root logger.

    The CLI calls `configure()`, which installs a handler on the root logger
    writing to the sys.stdout of that moment: under CliRunner or pytest's
    capture, a stream closed when the test ends. Left installed, every later
    log line in the session fails to write and prints a "Logging error"
    traceback (thousands of them, slowing the event loops of later tests).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


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
