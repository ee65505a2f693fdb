"""Progress(): live updates seen by subscribers (also from another process),
latest value readable, cleared when the run ends."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest

from docket_nats import Docket, ExecutionState, Progress, Worker

pytestmark = pytest.mark.timeout(60)


async def test_progress_updates_arrive_live_and_in_order(docket: Docket, worker: Worker) -> None:
    proceed = asyncio.Event()

    async def counting(progress: Progress = Progress()) -> int:
        await progress.set_total(3)
        await progress.set_message("starting")
        await proceed.wait()
        for _ in range(3):
            await progress.increment()
        assert (progress.current, progress.total, progress.message) == (3, 3, "starting")
        return 3

    execution = await docket.add(counting, key="counting")()
    events = execution.subscribe()
    assert (await anext(events))["type"] == "state"
    assert (await anext(events))["type"] == "progress"
    running = asyncio.create_task(worker.run_until_finished())
    progress_seen: list[tuple[int | None, int, str | None]] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event["type"] == "progress":
                progress_seen.append((event["current"], event["total"], event["message"]))
                if event["message"] == "starting" and event["current"] == 0:
                    # The latest value is in the bucket for anyone who reads it.
                    found = await docket.get_execution("counting")
                    assert found is not None
                    await found.sync()
                    assert found.progress.total == 3
                    assert found.progress.message == "starting"
                    assert found.state is ExecutionState.RUNNING
                    proceed.set()
            elif event["state"] is ExecutionState.COMPLETED:
                break
    await events.aclose()
    await running
    assert progress_seen[-3:] == [(1, 3, "starting"), (2, 3, "starting"), (3, 3, "starting")]
    # Progress belongs to the run: gone once it finished.
    await execution.sync()
    assert execution.progress.current is None


async def test_progress_values_are_validated(docket: Docket, worker: Worker) -> None:
    async def bad(progress: Progress = Progress()) -> None:
        await progress.set_total(0)

    execution = await docket.add(bad)()
    await worker.run_until_finished()
    with pytest.raises(ValueError, match="at least 1"):
        await execution.get_result(timeout=timedelta(seconds=5))


WATCHER = """
import asyncio, sys
from docket_nats import Docket
from docket_nats.execution import Execution

async def main():
    async with Docket(name=sys.argv[2], url=sys.argv[1]) as docket:
        execution = await docket.get_execution(sys.argv[3])
        async for event in execution.subscribe():
            if event["type"] == "progress":
                print("progress", event["current"], event["total"], event["message"], flush=True)
            else:
                print("state", event["state"].value, flush=True)
                if event["state"].value == "completed":
                    return

asyncio.run(main())
"""


async def test_progress_is_observed_from_another_process(
    nats_url: str, docket: Docket, worker: Worker
) -> None:
    release = asyncio.Event()

    async def reporting(progress: Progress = Progress()) -> None:
        await release.wait()
        await progress.set_total(2)
        await progress.increment(2)
        await progress.set_message("all done")

    await docket.add(reporting, key="observed")()
    running = asyncio.create_task(worker.run_until_finished())
    watcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WATCHER,
        nats_url,
        docket.name,
        "observed",
        stdout=asyncio.subprocess.PIPE,
    )
    assert watcher.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while line := (await watcher.stdout.readline()).decode().strip():
            lines.append(line)
            if line == "state running":
                release.set()
        await watcher.wait()
    await running
    assert "progress 2 2 all done" in lines
    assert lines[-1] == "state completed"
