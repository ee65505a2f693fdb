"""A pytest plugin for users' tests: an ephemeral nats-server and fresh dockets.

Installed with docket-nats (entry point `pytest11`). Fixtures:

- `docket_nats_url`: the URL of a nats-server started for the test session
  (127.0.0.1, a free port, a temporary store; stopped after the session);
- `docket_nats_docket`: a connected `Docket` with a unique name on it, per test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from ._embedded import ServerProcess, free_port
from .docket import Docket

try:  # strict-mode pytest-asyncio needs its own decorator for async fixtures
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover
    async_fixture = pytest.fixture  # type: ignore[assignment]


@pytest.fixture(scope="session")
def docket_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ServerProcess(free_port(), tmp_path_factory.mktemp("docket-nats-server"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@async_fixture
async def docket_nats_docket(docket_nats_url: str) -> AsyncIterator[Docket]:
    async with Docket(name=f"test-{uuid.uuid4().hex[:12]}", url=docket_nats_url) as docket:
        yield docket
