"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from background_worker import running_in_background

from docket_nats import Docket, Worker


@pytest.fixture
async def live_worker(docket: Docket, worker: Worker) -> AsyncIterator[Worker]:
    """A worker running in the background, its heartbeat visible."""
    async with running_in_background(docket, worker):
        yield worker
