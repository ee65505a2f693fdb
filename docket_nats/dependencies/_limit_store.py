"""The KV bucket that flow control (concurrency, debounce, cooldown, rate limit) keeps.

One bucket per docket, `docket-<name>-limits`, history 1, without limit
markers (after a TTL expiry nats-py would read a marker as a key with no value
and refuse `create`: see docs/nats-facts.md §5). Every write is a raw publish to
`$KV.<bucket>.<key>` so it can carry both a per-message TTL (`Nats-TTL`, whole
seconds or more than 1 s: the server refuses less) and a compare-and-set on the
key's last sequence (`Nats-Expected-Last-Subject-Sequence`, 0 = "no message on
this key"). That pair is the whole toolkit:

- create-if-absent with a lease: expected 0 + TTL (refused while someone holds it);
- renew / update: expected = the revision we wrote last + TTL;
- remove: a subject purge (no marker left, so the next create expects 0 again),
  or a conditional delete marker that itself expires.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import TYPE_CHECKING, Any

from nats.js.errors import APIError, KeyNotFoundError

from .._connection import key_value_bucket
from .._subjects import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    KV_OPERATION,
    TTL,
    WRONG_LAST_SEQUENCE,
    encode_key,
    kv_stream,
    kv_subject,
    stream_purge_api,
    ttl_value,
)

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from .._context import DocketContext

# A delete marker goes away by itself after this long (no markers pile up).
MARKER_TTL = 1.0


def limit_key(*parts: object) -> str:
    """A KV key from parts (kind, scope, argument name, value), each one token."""
    return ".".join(encode_key(str(part)) for part in parts)


def window_key(
    kind: str, scope: str | None, argument: tuple[str, Any] | None, function_name: str
) -> str:
    """The key of one window: per task, or per argument value when bound to one."""
    if argument is None:
        return limit_key(kind, scope or "", "task", function_name)
    return limit_key(kind, scope or "", "argument", *argument)


class LimitStore:
    """Compare-and-set reads and writes on one docket's limits bucket."""

    def __init__(self, docket: DocketContext, kv: KeyValue) -> None:
        self.docket = docket
        self.kv = kv
        self.bucket = docket.names.bucket("limits")
        self.stream = kv_stream(self.bucket)
        self.purge_api = stream_purge_api(self.stream)
        self.ignored = f"{docket.connection.nc.new_inbox()}.ignored"

    def subject(self, key: str) -> str:
        return kv_subject(self.bucket, key)

    async def read(self, key: str) -> tuple[bytes | None, int]:
        """The key's value (None when absent or deleted) and its last sequence (0: none)."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError as missing:
            # A delete marker still counts as the key's last message.
            marker: object = getattr(missing, "entry", None)
            revision: int | None = getattr(marker, "revision", None)
            return None, revision or 0
        return entry.value, entry.revision or 0

    async def write(self, key: str, value: bytes, expected: int, ttl: float) -> int | None:
        """Write if the key's last sequence is still `expected`; the new one, or None."""
        headers = {
            EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected),
            TTL: ttl_value(ttl),
        }
        try:
            ack = await self.docket.connection.publish(self.subject(key), value, headers)
        except APIError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return ack.seq

    async def delete(self, key: str, expected: int) -> bool:
        """Delete if unchanged since `expected`; the marker expires by itself."""
        headers = {
            KV_OPERATION: "DEL",
            EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected),
            TTL: ttl_value(MARKER_TTL),
        }
        try:
            await self.docket.connection.publish(self.subject(key), b"", headers)
        except APIError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def purge(self, key: str) -> None:
        """Remove every message of the key (unconditional: only for a key we hold).

        Sent without waiting for the answer (it goes to an inbox nobody reads):
        the caller has nothing to do with it, and one that is lost (a disconnect)
        only means the key lives until its TTL runs out.
        """
        nc = self.docket.connection.nc
        payload = json.dumps({"filter": self.subject(key)}).encode()
        await nc.publish(self.purge_api, payload, reply=self.ignored)


# Per docket: the JetStream context the store was opened on, and the store.
_stores: weakref.WeakKeyDictionary[DocketContext, tuple[object, asyncio.Future[LimitStore]]] = (
    weakref.WeakKeyDictionary()
)


async def limit_store(docket: DocketContext) -> LimitStore:
    """The docket's store, its bucket created on first use (once per connection)."""
    js = docket.connection.js
    cached = _stores.get(docket)
    if cached is not None and cached[0] is js and cached[1].done() and not _failed(cached[1]):
        return cached[1].result()  # the hot path: no awaiting
    if cached is None or cached[0] is not js or _failed(cached[1]):
        cached = (js, asyncio.ensure_future(_open(docket)))
        _stores[docket] = cached
    return await asyncio.shield(cached[1])


def _failed(pending: asyncio.Future[LimitStore]) -> bool:
    return pending.done() and (pending.cancelled() or pending.exception() is not None)


async def _open(docket: DocketContext) -> LimitStore:
    kv = await key_value_bucket(
        docket.connection.js, docket.names.bucket("limits"), history=1, replicas=docket.replicas
    )
    return LimitStore(docket, kv)
