"""The shortest path through the product: add, run, done."""

from __future__ import annotations

from docket_nats import Disposition, Docket, Worker


async def test_an_added_task_runs(docket: Docket, worker: Worker) -> None:
    seen: list[str] = []

    async def greet(name: str) -> None:
        seen.append(name)

    execution = await docket.add(greet)("world")
    assert execution.disposition is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert seen == ["world"]
