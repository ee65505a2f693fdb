"""The observing commands (snapshot, watch, workers, clear, version), run as
subprocesses against a live worker."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from background_worker import running_in_background

import docket_nats
from docket_nats import Docket, Progress, Worker

pytestmark = pytest.mark.timeout(90)


async def cli(*arguments: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        *arguments,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def target(docket: Docket, nats_url: str) -> list[str]:
    return ["--url", nats_url, "--docket", docket.name]


async def report(label: str) -> None:
    pass


@pytest.fixture
async def live_worker(docket: Docket, worker: Worker) -> AsyncIterator[Worker]:
    docket.register(report)  # before the first heartbeat, which lists the tasks
    async with running_in_background(docket, worker):
        yield worker


async def test_version() -> None:
    code, out, _ = await cli("version")
    assert code == 0 and out.strip() == docket_nats.__version__


async def test_snapshot_table_and_json(docket: Docket, nats_url: str, live_worker: Worker) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await docket.add(report, later, key="report-later")("x")
    code, out, err = await cli("snapshot", *target(docket, nats_url), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["total_tasks"] == 1 and document["scheduled"] == 1
    assert [t["key"] for t in document["tasks"]] == ["report-later"]
    assert document["tasks"][0]["state"] == "scheduled"
    assert [w["name"] for w in document["workers"]] == [live_worker.name]

    code, out, err = await cli("snapshot", *target(docket, nats_url))
    assert code == 0, err
    assert "1 tasks (1 scheduled, 0 queued, 0 running), 1 workers" in out
    assert "report-later" in out and live_worker.name in out

    code, out, _ = await cli("snapshot", *target(docket, nats_url), "--json", "--tasks", "other")
    assert json.loads(out)["tasks"] == []


async def test_workers_and_workers_for_task(
    docket: Docket, nats_url: str, live_worker: Worker
) -> None:
    code, out, err = await cli("workers", *target(docket, nats_url))
    assert code == 0, err
    assert live_worker.name in out and "CONCURRENCY" in out

    code, out, _ = await cli("workers", "for-task", "report", *target(docket, nats_url), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["name"] for row in rows] == [live_worker.name]
    assert "report" in rows[0]["tasks"]

    code, out, _ = await cli("workers", "for-task", "nobody-runs-this", *target(docket, nats_url))
    assert code == 0 and "No workers for 'nobody-runs-this'" in out


async def test_watch_follows_state_and_progress(
    docket: Docket, nats_url: str, live_worker: Worker
) -> None:
    go = asyncio.Event()

    async def stepping(progress: Progress = Progress()) -> None:
        await go.wait()
        await progress.set_total(4)
        await progress.increment(2)
        await progress.set_message("halfway")

    later = datetime.now(UTC) + timedelta(seconds=1)
    await docket.add(stepping, later, key="stepping")()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        "watch",
        "stepping",
        *target(docket, nats_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while line := (await process.stdout.readline()).decode().rstrip():
            lines.append(line)
            if line.startswith("running"):
                go.set()
        await process.wait()
    assert process.returncode == 0
    # Usually still scheduled when the watcher starts; on a slow machine it may have fired.
    assert lines[0] in ("scheduled", "queued", f"running on {live_worker.name}")
    assert f"running on {live_worker.name}" in lines
    assert "[###############---------------] 2/4 halfway" in lines
    assert lines[-1] == f"completed on {live_worker.name}"


async def test_watch_unknown_key(docket: Docket, nats_url: str) -> None:
    # docket's message, and docket's exit status: 0 (issue #12 asks for its exit codes).
    code, out, _ = await cli("watch", "no-such-key", *target(docket, nats_url))
    assert code == 0
    assert "Task with key 'no-such-key' not found or function not registered" in out


async def test_clear_does_not_ask(docket: Docket, nats_url: str, live_worker: Worker) -> None:
    # As docket's `clear` (issue #12): no prompt, the count, exit 0; --yes still accepted.
    later = datetime.now(UTC) + timedelta(hours=1)
    await docket.add_many(docket.call(report, later)(str(n)) for n in range(5))

    code, out, err = await cli("clear", *target(docket, nats_url))
    assert code == 0, err
    assert f"Cleared 5 tasks from docket '{docket.name}'" in out
    assert (await docket.snapshot()).total_tasks == 0

    code, out, err = await cli("clear", *target(docket, nats_url), "--yes")
    assert code == 0, err
    assert "Cleared 0 tasks" in out
