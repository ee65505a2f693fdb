"""The add hot path: the Publisher's own HPUB writing and ack expiry, task keys,
and what `add(fn)` returns. Against a real server; the header encoding is
compared with nats-py's own."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.errors import BadHeaderError
from nats.js.errors import APIError

from docket_nats import Disposition, Docket
from docket_nats._keys import new_key
from docket_nats._publisher import MSG_ID, Publisher, decode_headers, encode_headers

UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def noop() -> None: ...


def nats_py_block(headers: dict[str, str]) -> bytes:
    """The header block nats-py 2.16's Client.publish writes (its loop, restated)."""
    newlines = str.maketrans({"\r": " ", "\n": " "})
    block = b"NATS/1.0\r\n"
    for k, v in headers.items():
        key = k.strip()
        if not key:
            continue
        block += key.encode() + b": " + v.strip().translate(newlines).encode() + b"\r\n"
    return block + b"\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Nats-Expected-Last-Subject-Sequence": "0", "Other": "docket.x.*.key"},
        {"Padded": "  value  ", "Multi": "one\r\ntwo\nthree\rfour"},
        {" Spaced-Key ": "v", "": "dropped"},
        {"Unicode": "café"},
    ],
)
def test_header_block_is_what_nats_py_writes(headers: dict[str, str]) -> None:
    assert encode_headers(headers, "abc.1") == nats_py_block({**headers, MSG_ID: "abc.1"})
    # Again: the second time the keys are known plain ones (the fast path).
    assert encode_headers(headers, "abc.1") == nats_py_block({**headers, MSG_ID: "abc.1"})
    assert encode_headers(headers, None) == nats_py_block(headers)


def test_header_block_refuses_keys_nats_py_refuses() -> None:
    for key in ("Bad:Key", "Bad Key", "Bad\r\nKey"):
        with pytest.raises(BadHeaderError):
            encode_headers({key: "v"}, None)


def test_header_block_round_trips_for_the_fallback() -> None:
    headers = {"A": "1", "B": "docket.x.*.k"}
    assert decode_headers(encode_headers(headers, "id.7")) == {**headers, MSG_ID: "id.7"}


async def test_a_callers_msg_id_is_kept(docket: Docket) -> None:
    subject = docket.names.run("own-id")
    await docket.connection.publish(subject, b"x", {MSG_ID: "mine"})
    message = await docket.connection.js.get_last_msg(docket.names.stream, subject)
    assert message.headers is not None and message.headers[MSG_ID] == "mine"


async def test_every_publish_carries_its_headers_and_a_msg_id(docket: Docket) -> None:
    execution = await docket.add(noop, key="with-headers")()
    message = await docket.connection.js.get_last_msg(
        docket.names.stream, docket.names.run(execution.key)
    )
    headers = message.headers or {}
    assert headers["Nats-Expected-Last-Subject-Sequence"] == "0"
    assert headers["Nats-Expected-Last-Subject-Sequence-Subject"] == docket.names.any_state(
        "with-headers"
    )
    assert headers[MSG_ID]


async def test_unanswered_publishes_time_out_in_order_and_leave_nothing_pending(
    nats_url: str,
) -> None:
    nc = await nats.connect(nats_url)  # pyright: ignore[reportUnknownMemberType]
    try:
        # A core NATS subscriber that never answers: no "no responders", no ack.
        await nc.subscribe("silent.>")  # pyright: ignore[reportUnknownMemberType]
        publisher = await Publisher.start(nc, ack_timeout=0.3, retry_for=0.0)
        started = time.monotonic()
        first = asyncio.create_task(publisher.publish("silent.a", b"", None))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(publisher.publish("silent.b", b"", None))
        with pytest.raises(TimeoutError):
            await first
        assert 0.25 < time.monotonic() - started < 1.0
        assert not second.done()  # its own deadline is 0.1 s later
        with pytest.raises(TimeoutError):
            await second
        assert 0.35 < time.monotonic() - started < 1.2
        assert publisher.pending == {}
        # The expiry timer re-arms for later publishes.
        with pytest.raises(TimeoutError):
            await publisher.publish("silent.c", b"", None)
        assert publisher.pending == {}
    finally:
        await nc.close()


async def test_a_cancelled_publish_leaves_nothing_pending(nats_url: str) -> None:
    nc = await nats.connect(nats_url)  # pyright: ignore[reportUnknownMemberType]
    try:
        await nc.subscribe("silent.>")  # pyright: ignore[reportUnknownMemberType]
        publisher = await Publisher.start(nc, ack_timeout=5.0, retry_for=0.0)
        task = asyncio.create_task(publisher.publish("silent.x", b"", None))
        await asyncio.sleep(0.05)
        assert len(publisher.pending) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert publisher.pending == {}
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "answer",
    [b"", b"not json", b'{"error": {"code": 400, "err_code": 1, "description": "x", "new": 1}}'],
)
async def test_an_unreadable_acknowledgement_fails_the_publish_at_once(
    nats_url: str, answer: bytes
) -> None:
    nc = await nats.connect(nats_url)  # pyright: ignore[reportUnknownMemberType]
    try:

        async def responder(message: nats.aio.msg.Msg) -> None:
            await nc.publish(message.reply, answer)

        await nc.subscribe("odd.>", cb=responder)  # pyright: ignore[reportUnknownMemberType]
        publisher = await Publisher.start(nc, ack_timeout=30.0, retry_for=0.0)
        with pytest.raises(APIError):
            await asyncio.wait_for(publisher.publish("odd.x", b"", None), timeout=5)
        assert publisher.pending == {}
    finally:
        await nc.close()


async def test_without_nats_py_internals_publishes_go_through_client_publish(
    docket: Docket,
) -> None:
    publisher = docket.connection._publisher  # pyright: ignore[reportPrivateUsage]
    assert publisher is not None and publisher._direct  # pyright: ignore[reportPrivateUsage]
    publisher._direct = False  # pyright: ignore[reportPrivateUsage]
    first = await docket.add(noop, key="fallback")()
    again = await docket.add(noop, key="fallback")()
    later = await docket.add(noop, when=datetime.now(UTC) + timedelta(hours=1), key="later")()
    assert first.disposition is Disposition.SCHEDULED
    assert again.disposition is Disposition.ALREADY_SCHEDULED  # the headers arrived
    assert later.disposition is Disposition.SCHEDULED


def test_keys_are_uuid_shaped_and_unique() -> None:
    keys = [new_key() for _ in range(10_000)]
    assert len(set(keys)) == len(keys)
    assert all(UUID_SHAPE.match(key) for key in keys)


def _child_key(queue: multiprocessing.Queue[str]) -> None:
    queue.put(new_key())


def test_a_forked_child_makes_keys_of_its_own() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    ours = new_key()
    child = context.Process(target=_child_key, args=(queue,))
    child.start()
    theirs = queue.get(timeout=10)
    child.join(10)
    # Same counter position possible, never the same prefix (72 random bits).
    assert theirs.rsplit("-", 1)[0] != ours.rsplit("-", 1)[0]


async def test_add_returns_a_callable_whose_call_is_a_coroutine(docket: Docket) -> None:
    call = docket.add(noop)()
    assert asyncio.iscoroutine(call)
    execution = await asyncio.create_task(call)
    assert execution.disposition is Disposition.SCHEDULED


async def test_the_strike_check_happens_when_the_add_is_awaited(docket: Docket) -> None:
    pending = docket.add(noop, key="struck-late")()
    await docket.strike(noop)
    execution = await pending
    assert execution.disposition is Disposition.STRUCK
