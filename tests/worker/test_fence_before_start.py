"""A fence that comes right after the executor created a run's task, before that
task's first step: Python then never enters the task's body (a coroutine cancelled
before it starts runs no `finally`). The run must still give up its message and
its run slot; otherwise the lease keeper renews the message forever and the
server never redelivers it: a task lost (seen once in CI across a server restart).
"""

from __future__ import annotations

import asyncio

from nats.js import api

from docket_nats import Docket
from docket_nats._subjects import NORMAL_LEVEL
from docket_nats.worker._executor import Executor, RunSettings
from docket_nats.worker._slots import Slots

ACK_WAIT = 0.5  # seconds: the fenced message comes back after this


async def test_a_run_fenced_before_its_first_step_is_redelivered_and_frees_its_slot(
    docket: Docket,
) -> None:
    ran: list[str] = []
    second_run = asyncio.Event()

    async def work(tag: str) -> None:
        ran.append(tag)
        second_run.set()

    docket.register(work)
    await docket.add(work, key="the-key")("once")
    names = docket.names
    js = docket.connection.js
    await js.add_consumer(  # pyright: ignore[reportUnknownMemberType]
        names.stream,
        api.ConsumerConfig(
            durable_name="fence-before-start",
            filter_subject=names.level_filter(NORMAL_LEVEL),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
        ),
    )
    subscription = await js.pull_subscribe_bind("fence-before-start", names.stream)

    slots = Slots(1)
    settings = RunSettings(
        worker_name="w",
        concurrency=1,  # one run slot: a leaked one starves the redelivered copy
        fallback_task=None,
        max_deliveries=10,
        dependencies={},
        shared=None,
    )
    executor = Executor(docket.context, settings, slots)
    running = asyncio.create_task(executor.run())
    try:
        [message] = await subscription.fetch(1, timeout=5)
        slots.take(NORMAL_LEVEL)
        executor.deliver(message)
        # The run loop moves the message from its mailbox to a new run's task in one
        # step. Stepping the loop one round at a time (an Event would let the run's
        # task take its first step too) finds the moment to fence: the task made,
        # not yet started.
        async with asyncio.timeout(5):
            while list(executor._mailbox):  # pyright: ignore[reportPrivateUsage]  # noqa: ASYNC110
                await asyncio.sleep(0)
        assert executor.held() == [message]
        await executor.fence("cut off (test)", grace=1.0)

        assert ran == []  # the body never ran: the case under test
        assert executor.held() == []  # nothing left for the lease keeper to renew
        assert slots.held == 0

        # Unsettled and no longer renewed, the message comes back once its lease lapses,
        # and the executor has a run slot to run it in.
        [again] = await subscription.fetch(1, timeout=5 + ACK_WAIT)
        assert again.metadata.num_delivered == 2
        slots.take(NORMAL_LEVEL)
        executor.deliver(again)
        async with asyncio.timeout(5):
            await second_run.wait()
        assert ran == ["once"]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await subscription.unsubscribe()
