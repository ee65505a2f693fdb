"""Garbage published onto a running worker's subjects and buckets: every bad value
is parked or ignored, no actor crashes, and the worker then runs a normal task."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from docket_nats import Docket, Worker
from docket_nats._subjects import DOCKET_WHEN, kv_subject

pytestmark = pytest.mark.timeout(60)

rng = random.Random(14)  # deterministic garbage
GARBAGE = [
    b"",
    b"\x00",
    b"\xc1",  # never valid msgpack
    b"\x81\xa1v\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # {"v": 2**64-1}
    b"nan",
    b"inf",
    b"{}",
    rng.randbytes(64),
    rng.randbytes(1024),
]


async def test_garbage_on_every_subject_and_bucket_is_survived(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="docket_nats")
    names = docket.names
    js, nc = docket.connection.js, docket.connection.nc
    ran = asyncio.Event()

    async def normal(label: str) -> None:
        assert label == "afterwards"
        ran.set()

    docket.register(normal)
    running = asyncio.create_task(worker.run_forever())
    try:
        for index, data in enumerate(GARBAGE):
            # Work subjects: bytes that are no envelope, and a due time that is no time.
            await js.publish(names.run(f"junk-{index}"), data)
            await js.publish(names.run(f"when-{index}"), data, headers={DOCKET_WHEN: "nan"})
            # Core subjects a worker listens on.
            await nc.publish(names.cancel(f"junk-{index}"), data)
            await nc.publish(names.ack_wait_notice, data)
            # KV values: strike rules and heartbeats.
            strikes, workers = names.bucket("strikes"), names.bucket("workers")
            await js.publish(kv_subject(strikes, f"junk-{index}"), data)
            await js.publish(kv_subject(workers, f"junk-{index}"), data)
        await nc.publish(names.ack_wait_notice, b"inf")
        await nc.flush()

        await docket.add(normal)("afterwards")
        async with asyncio.timeout(20):
            await ran.wait()

        # Every garbage message was parked with the reason, none held or run:
        # a due time of "nan" does not hold a message forever.
        expected = sorted(
            f"{kind}-{index}" for kind in ("junk", "when") for index in range(len(GARBAGE))
        )
        letters = []
        for _ in range(400):  # parking goes on beside the normal task: bounded poll
            letters = await docket.dead_letters()
            if len(letters) >= len(expected):
                break
            await asyncio.sleep(0.05)
        assert sorted(letter.key for letter in letters) == expected
        assert all(letter.reason.startswith("not a task envelope") for letter in letters)
        # Live workers can still be listed past the garbage heartbeats.
        assert [info.name for info in await docket.workers()] == [worker.name]
    finally:
        worker.stop()
        await running

    assert worker._supervisor.restarts == {}  # pyright: ignore[reportPrivateUsage]
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
    assert any("not a heartbeat" in r.getMessage() for r in caplog.records)
    assert any("ignoring an ack wait notice" in r.getMessage() for r in caplog.records)
    assert any("not a strike rule" in r.getMessage() for r in caplog.records)
