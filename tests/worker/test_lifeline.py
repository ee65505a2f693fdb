"""The lifeline thread on its own (worker/_lifeline.py), on a real server: it
renews the held leases while no beat comes, and hangs up once beats resume (its
connection idles between stalls, and the server would drop it as stale)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats
import pytest
from nats.aio.msg import Msg

from docket_nats.worker._contact import Contact
from docket_nats.worker._lifeline import STALL, Lifeline

pytestmark = pytest.mark.timeout(30)

ACK_WAIT = 0.6  # a stall is STALL * ACK_WAIT = 0.1 s without a beat


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """A bounded poll: the thread's state has no event to await."""
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"waited {within}s in vain for {what}") from None


async def beating(lifeline: Lifeline) -> None:
    """What the loop watch does while the loop runs."""
    while True:
        lifeline.beat()
        await asyncio.sleep(ACK_WAIT * STALL / 4)


async def test_the_lifeline_renews_through_a_stall_and_hangs_up_after_it(
    nats_url: str, docket_name: str
) -> None:
    nc = await nats.connect(nats_url)
    renewals: list[bytes] = []
    ack_subject = f"{docket_name}.ack"

    async def on_renewal(message: Msg) -> None:
        renewals.append(message.data)

    await nc.subscribe(ack_subject, cb=on_renewal)  # pyright: ignore[reportUnknownMemberType]
    await nc.flush()
    held = [Msg(nc, subject=f"{docket_name}.run", reply=ack_subject)]
    contact = Contact()
    lifeline = Lifeline(
        "w", contact, lambda: ACK_WAIT, lambda: held, lambda: {"servers": [nats_url]}
    )
    beats = asyncio.create_task(beating(lifeline))
    lifeline.start()
    try:
        await asyncio.sleep(ACK_WAIT)  # beating: nothing to do
        assert (lifeline.rounds, lifeline.connected, renewals) == (0, False, [])

        for stall in (1, 2):  # the second stall connects afresh
            beats.cancel()
            rounds, renewed = lifeline.rounds + 2, len(renewals) + 2
            await until(lambda r=rounds: lifeline.rounds >= r, f"renewals in stall {stall}")
            assert lifeline.connected
            await until(lambda n=renewed: len(renewals) >= n, "the renewals to arrive")
            assert set(renewals) == {b"+WPI"}
            assert contact.lifeline[1] == {ack_subject}

            beats = asyncio.create_task(beating(lifeline))
            await until(lambda: not lifeline.connected, f"the hang-up after stall {stall}")
            rounds = lifeline.rounds
            await asyncio.sleep(ACK_WAIT)  # beating again: no round, no connection
            assert (lifeline.rounds, lifeline.connected) == (rounds, False)
    finally:
        lifeline.stop()
        beats.cancel()
        await nc.close()
