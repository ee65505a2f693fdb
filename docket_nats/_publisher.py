"""Pipelined JetStream publishes for a Docket's connection (see `Publisher`).

Also the NATS header block encoding it writes straight into nats-py's buffer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.client import __version__ as nats_client_version
from nats.aio.msg import Msg
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError

from ._subjects import MSG_ID, STATUS

logger = logging.getLogger("docket_nats.publisher")

# How long a publish keeps retrying while a stream has no leader (a Raft election
# after a node died takes ~4 s, docs/nats-facts.md §4) or its ack is lost. Well inside the
# streams' 2-minute duplicate window (see Publisher for why a retry of a publish
# that did land is not stored twice).
PUBLISH_RETRY_FOR = 30.0


class Publisher:
    """Pipelined JetStream publishes: one reply subscription, a future per publish.

    A request per publish (nats-py's `js.publish`) costs a round trip of
    bookkeeping each; nats-py's `publish_async` pipelines but, in 2.16, raises a
    refused publish's error inside its subscription callback instead of failing
    the future (so a duplicate key would surface as a timeout). This does the
    same pipelining and delivers both outcomes.

    In a cluster a stream is unwritable for a few seconds after its leader dies
    (no responders, or no ack at all): the publish is retried with backoff for
    `retry_for` seconds. A retry of a publish that did land (its ack was lost) is
    never stored twice: while the first copy is queued, the key's expected-last-
    sequence check refuses it (the server checks that before the Msg-Id, so the
    caller sees "already scheduled"); once the copy has run and left the work
    queue, the Nats-Msg-Id every publish carries makes it a duplicate (2-minute
    window). tests/test_cluster.py shows both.

    Every add runs through here, and gathered adds are bound by this process's
    CPU, hence two economies: the HPUB command is written here (`Client.publish`
    re-validates and re-encodes every header on every call, about a tenth of an
    add), and one timer per publisher expires unanswered publishes instead of a
    timer handle per publish.
    """

    def __init__(
        self, nc: Client, prefix: str, ack_timeout: float, retry_for: float = PUBLISH_RETRY_FOR
    ) -> None:
        self.nc = nc
        self.prefix = prefix
        self.ack_timeout = ack_timeout
        self.retry_for = retry_for
        # Reply subject -> (future, deadline on the loop's clock). All publishes
        # wait the same ack_timeout, so deadlines grow in insertion order and the
        # sweep can stop at the first entry that is not due.
        self.pending: dict[str, tuple[asyncio.Future[api.PubAck], float]] = {}
        self._next = 0
        self._sweeper: asyncio.TimerHandle | None = None
        # Message ids: unique per publisher (a NUID) plus a counter; a uuid4 per
        # publish costs a system call each.
        self._ids = f"{prefix.rsplit('.', 2)[-2]}."
        self._next_id = 0
        # The nats-py internals publish() writes through, only on the nats-py
        # releases this was checked against; any other gets Client.publish
        # (slower, same bytes on the wire).
        self._direct = _NATS_PY_RELEASE in _CHECKED_RELEASES and all(
            hasattr(nc, name) for name in _CLIENT_INTERNALS
        )
        # The client's loop (a publisher is made inside it), kept: on CPython
        # 3.11 asyncio.get_running_loop() makes a getpid() system call each time.
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def start(
        cls, nc: Client, ack_timeout: float, retry_for: float = PUBLISH_RETRY_FOR
    ) -> Publisher:
        publisher = cls(nc, f"{nc.new_inbox()}.", ack_timeout, retry_for)
        await nc.subscribe(  # pyright: ignore[reportUnknownMemberType]
            publisher.prefix + "*", cb=publisher._on_reply
        )
        return publisher

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None
    ) -> api.PubAck:
        # One coroutine, the retries included: every frame and timer handle less
        # per publish is allocation (and garbage collection) less per add.
        msg_id: str | None = None
        if headers is None or MSG_ID not in headers:
            self._next_id += 1
            msg_id = f"{self._ids}{self._next_id}"
        block = encode_headers(headers, msg_id)
        loop = self._loop
        give_up = loop.time() + self.retry_for
        backoff = 0.05
        while True:
            self._next += 1
            reply = f"{self.prefix}{self._next}"
            future: asyncio.Future[api.PubAck] = loop.create_future()
            deadline = loop.time() + self.ack_timeout
            self.pending[reply] = (future, deadline)
            if self._sweeper is None:
                self._sweeper = loop.call_at(deadline, self._sweep)
            try:
                if self._direct:
                    nc = self.nc
                    if self._enqueue(subject, reply, block, data):
                        await nc._flush_pending(force_flush=True)  # pyright: ignore[reportPrivateUsage]
                    flush_queue = nc._flush_queue  # pyright: ignore[reportPrivateUsage]
                    if flush_queue is not None and flush_queue.empty():
                        await nc._flush_pending()  # pyright: ignore[reportPrivateUsage]
                else:
                    await self.nc.publish(subject, data, reply, decode_headers(block))
                return await future
            except (NoStreamResponseError, TimeoutError) as error:
                if self.nc.is_closed or loop.time() + backoff > give_up:
                    raise
                logger.debug("publish to %s failed (%r); retrying", subject, error)
            finally:
                self.pending.pop(reply, None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _enqueue(self, subject: str, reply: str, block: bytes, data: bytes) -> bool:
        """Client.publish up to the flush, with the header block made: checks the
        subject and the connection, appends the HPUB command to the client's
        pending buffer. True when the buffer is over its limit (Client._send_command
        then forces a flush)."""
        nc = self.nc
        if not subject or _SUBJECT_INVALID.search(subject):
            raise BadSubjectError
        size = len(data)
        limit: int = nc._max_pending_size  # pyright: ignore[reportPrivateUsage]
        if nc._status != Client.CONNECTED:  # pyright: ignore[reportPrivateUsage]
            if nc.is_closed:
                raise ConnectionClosedError
            if nc.is_draining_pubs:
                raise ConnectionDrainingError
            if not nc.is_connected and (limit <= 0 or size + nc.pending_data_size > limit):
                # Reconnecting with the publish buffer full (or disabled).
                raise OutboundBufferLimitError
        if size > nc.max_payload:
            raise MaxPayloadError
        total = len(block) + size
        command = (
            f"HPUB {subject} {reply} {len(block)} {total}\r\n".encode() + block + data + b"\r\n"
        )
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += size
        nc._pending.append(command)  # pyright: ignore[reportPrivateUsage]
        nc._pending_data_size += len(command)  # pyright: ignore[reportPrivateUsage]
        return 0 < limit < nc._pending_data_size  # pyright: ignore[reportPrivateUsage]

    def _sweep(self) -> None:
        """Fail the publishes whose ack is overdue; re-arm for the next deadline."""
        self._sweeper = None
        now = self._loop.time()
        overdue: list[str] = []
        for reply, (_, deadline) in self.pending.items():
            if deadline > now:
                self._sweeper = self._loop.call_at(deadline, self._sweep)
                break
            overdue.append(reply)
        for reply in overdue:
            future, _ = self.pending.pop(reply)
            if not future.done():
                future.set_exception(TimeoutError("no acknowledgement from JetStream"))

    async def _on_reply(self, message: Msg) -> None:
        entry = self.pending.pop(message.subject, None)
        if entry is None:
            return
        future = entry[0]
        if future.done():
            return
        if message.headers and message.headers.get(STATUS) == "503":
            future.set_exception(NoStreamResponseError())
            return
        # The entry is gone from `pending` (no sweep will time it out): whatever
        # the reply holds, the future must be settled here.
        try:
            reply = _pub_ack_decoder.decode(message.data)
            if reply.error is not None:
                known = {"code", "description", "err_code", "stream", "seq"}
                error: BaseException = APIError(
                    **{name: value for name, value in reply.error.items() if name in known}
                )
            else:
                future.set_result(
                    api.PubAck(stream=reply.stream, seq=reply.seq, duplicate=reply.duplicate)
                )
                return
        except Exception as problem:
            error = APIError(description=f"unreadable publish acknowledgement: {problem}")
        future.set_exception(error)


# nats-py releases (major.minor) whose Client.publish Publisher._enqueue restates.
_CHECKED_RELEASES = ("2.16",)
_NATS_PY_RELEASE = ".".join(nats_client_version.split(".")[:2])
# The members of nats-py's Client that Publisher writes through.
_CLIENT_INTERNALS = (
    "_status",
    "_max_pending_size",
    "_pending",
    "_pending_data_size",
    "_flush_queue",
    "_flush_pending",
)
# As Client.publish checks them: no whitespace in a subject (CRLF would inject
# protocol), header keys are RFC 7230 tokens.
_SUBJECT_INVALID = re.compile(r"[ \t\r\n]")
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_HEADER_LINE = "NATS/1.0\r\n"
# Header keys known to be tokens as they are (so not re-checked per publish);
# bounded, in case a caller makes up keys.
_plain_header_keys: set[str] = {MSG_ID}


def encode_headers(headers: Mapping[str, str] | None, msg_id: str | None) -> bytes:
    """The NATS header block of `headers` (plus a Nats-Msg-Id), as Client.publish
    writes it: keys checked, values stripped, CR/LF in a value turned to spaces."""
    text = _HEADER_LINE
    lines = 1
    if headers:
        for key, value in headers.items():
            if key not in _plain_header_keys:
                return _encode_headers_checked(headers, msg_id)
            text += f"{key}: {value.strip()}\r\n"
        lines += len(headers)
    if msg_id is not None:
        text += f"{MSG_ID}: {msg_id}\r\n"
        lines += 1
    if text.count("\n") != lines or text.count("\r") != lines:  # a value with CR or LF
        return _encode_headers_checked(headers, msg_id)
    return (text + "\r\n").encode()


def _encode_headers_checked(headers: Mapping[str, str] | None, msg_id: str | None) -> bytes:
    text = _HEADER_LINE
    for raw_key, value in (headers or {}).items():
        key = raw_key.strip()
        if not key:
            continue  # as Client.publish: an empty key is left out
        if not _HEADER_KEY.fullmatch(key):
            raise BadHeaderError(key)
        if key == raw_key and len(_plain_header_keys) < 256:
            _plain_header_keys.add(key)
        text += f"{key}: {value.strip().translate(_HEADER_VALUE_NEWLINES)}\r\n"
    if msg_id is not None:
        text += f"{MSG_ID}: {msg_id}\r\n"
    return (text + "\r\n").encode()


def decode_headers(block: bytes) -> dict[str, str]:
    """The headers of a block encode_headers made (for Client.publish)."""
    headers: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        if line:
            key, _, value = line.partition(": ")
            headers[key] = value
    return headers


class _PubAckReply(msgspec.Struct):
    """The server's reply to a JetStream publish (decoded with msgspec: hot path)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_pub_ack_decoder = msgspec.json.Decoder(_PubAckReply)
