"""docket_nats.testing assertions and the pytest plugin's fixtures."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docket_nats import Docket, Worker
from docket_nats.testing import (
    assert_no_tasks,
    assert_task_count,
    assert_task_not_scheduled,
    assert_task_scheduled,
)

pytestmark = pytest.mark.timeout(60)


async def send(to: str, subject: str = "hi", urgent: bool = False) -> None:
    pass


async def other() -> None:
    pass


async def test_assertions_on_scheduled_tasks(docket: Docket, worker: Worker) -> None:
    await assert_no_tasks(docket)
    await docket.add(send, key="first")("ann", subject="hello", urgent=True)
    await docket.add(send, datetime.now(UTC) + timedelta(hours=1))("bob")
    await docket.add(other)()

    await assert_task_scheduled(docket, send)
    await assert_task_scheduled(docket, "send", args=("ann",), kwargs={"urgent": True})
    await assert_task_scheduled(docket, send, key="first")
    await assert_task_not_scheduled(docket, send, args=("carol",))
    await assert_task_count(docket, count=3)
    await assert_task_count(docket, send, count=2)

    with pytest.raises(AssertionError, match=r"not found with args=\('carol',\)"):
        await assert_task_scheduled(docket, send, args=("carol",))
    with pytest.raises(AssertionError, match="found but should not be scheduled"):
        await assert_task_not_scheduled(docket, other)
    with pytest.raises(AssertionError, match="Expected 1 tasks for send, found 2"):
        await assert_task_count(docket, send, count=1)
    with pytest.raises(AssertionError, match=r"Expected no tasks, found 3 task\(s\) scheduled"):
        await assert_no_tasks(docket)

    await docket.cancel(next(e.key for e in (await docket.snapshot()).future if e.args == ("bob",)))
    await worker.run_until_finished()
    await assert_no_tasks(docket)
    with pytest.raises(AssertionError, match="no tasks scheduled on docket"):
        await assert_task_scheduled(docket, send)


USER_TEST = """
from docket_nats import Docket, Worker
from docket_nats.testing import assert_no_tasks, assert_task_scheduled

async def greet(name: str) -> str:
    return f"hello {name}"

async def test_with_the_plugin(docket_nats_docket: Docket) -> None:
    execution = await docket_nats_docket.add(greet)("you")
    await assert_task_scheduled(docket_nats_docket, greet, args=("you",))
    async with Worker(docket_nats_docket) as worker:
        await worker.run_until_finished()
    await assert_no_tasks(docket_nats_docket)
    assert await execution.get_result() == "hello you"

def test_the_server_url(docket_nats_url: str) -> None:
    assert docket_nats_url.startswith("nats://127.0.0.1:")
"""


async def test_pytest_plugin_gives_users_a_server(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        # The plugin comes from the package's pytest11 entry point (pip install).
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        str(tmp_path / "test_user.py"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode == 0, output.decode()
    assert b"2 passed" in output
