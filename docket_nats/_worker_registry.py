"""Who is alive: worker heartbeats in a KV bucket whose entries expire.

Each worker writes its entry every `heartbeat_interval` with a per-message TTL of
`heartbeat_interval * missed_heartbeats`; a worker that dies simply stops
writing, and the server removes its entry when the TTL runs out. Listing the
workers is reading the bucket: no sweeping, no clocks to agree on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from ._connection import key_value_bucket
from ._subjects import TTL, Names, encode_key, kv_stream, kv_subject, ttl_value

logger = logging.getLogger("docket_nats.workers")


class Heartbeat(msgspec.Struct, kw_only=True):
    """What a worker says about itself on every beat."""

    name: str
    last_seen: datetime
    started: datetime
    concurrency: int
    running: int
    tasks: list[str]


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker, as docket's `Docket.workers()` reports it."""

    name: str
    last_seen: datetime
    tasks: set[str]
    concurrency: int = 0
    running: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Heartbeat)


async def heartbeat_bucket(js: JetStreamContext, names: Names, replicas: int) -> KeyValue:
    """The docket's workers bucket (created on first use; creation is idempotent)."""
    return await key_value_bucket(js, names.bucket("workers"), history=1, replicas=replicas)


async def beat(js: JetStreamContext, names: Names, heartbeat: Heartbeat, ttl: float) -> None:
    """Write one heartbeat that the server deletes after `ttl` seconds."""
    # nats-py's KV put takes no TTL: publish to the bucket's subject with Nats-TTL.
    subject = kv_subject(names.bucket("workers"), encode_key(heartbeat.name))
    headers = {TTL: ttl_value(ttl)}
    await js.publish(subject, _encoder.encode(heartbeat), headers=headers)


def decode_heartbeat(key: str, data: bytes) -> Heartbeat | None:
    """A heartbeat, or None (logged) for bytes that are not one: anyone can write
    to the bucket, and one bad entry must not hide every worker."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as error:  # ValidationError included
        logger.warning("ignoring worker entry %r: not a heartbeat (%s)", key, error)
        return None


async def list_workers(js: JetStreamContext, names: Names, replicas: int) -> list[WorkerInfo]:
    """The workers of a docket alive now (their heartbeats have not expired).

    The entries are listed from the stream's own count of messages per subject,
    which is exact when asked; nats-py's `KeyValue.keys()` watches the bucket and
    can end before it has taken the entries delivered to it (a worker that was
    just listed missing from the next listing).
    """
    await heartbeat_bucket(js, names, replicas)  # it exists; read through its stream
    bucket = names.bucket("workers")
    stream = kv_stream(bucket)
    info = await js.stream_info(stream, subjects_filter=kv_subject(bucket, ">"))
    subjects = [subject for subject, count in (info.state.subjects or {}).items() if count]

    async def read(subject: str) -> Heartbeat | None:
        try:
            message = await js.get_last_msg(stream, subject)
        except NotFoundError:  # expired between listing and reading
            return None
        return decode_heartbeat(Names.key_of(subject), message.data) if message.data else None

    beats = await asyncio.gather(*(read(subject) for subject in subjects))
    return [
        WorkerInfo(b.name, b.last_seen, set(b.tasks), b.concurrency, b.running)
        for b in beats
        if b is not None
    ]
