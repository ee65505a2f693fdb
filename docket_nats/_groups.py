"""Groups: tasks added together, and a callback that runs once after all of them.

State lives in one KV bucket per docket, `docket-N-groups` (docs/architecture.md,
"Groups"), never in a worker's memory:

    <group>.state      GroupState: total, a done bitmap, a failed bitmap, the ids
                       of the committed outcome batches, the callback's envelope,
                       and the callback message that claimed its run
                       (compare-and-set on every change)
    <group>.members    the member keys, in member order (written once)
    <group>.b.<id>     the outcomes of the members one write counted

A member's end is recorded as: a batch record with its outcome (and those of the
members that ended meanwhile in the same process), then its bit and the batch's id
in one compare-and-set (a member whose bit is set already is left out: it counts
once). Whoever sees every bit set publishes the callback with the member outcomes
baked in, under the callback's own key with expected last sequence 0 and a
`Nats-Msg-Id` of the group; the worker that takes the callback first claims it
(`<group>.claim.<index>`, created once with its stream sequence), so any other copy
is acked unrun. Only then is the member acked: a crash anywhere before means a
redelivery that repeats the same idempotent steps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import APIError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ._connection import key_value_bucket
from ._context import DocketContext, HasContext, context_of
from ._state_records import record_cancelled
from ._subjects import (
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    GROUP,
    GROUP_MEMBER,
    GROUP_THEN,
    GROUP_THEN_INDEX,
    LAST_SEQUENCE,
    MSG_ID,
    NATS_SUBJECT,
    NORMAL_LEVEL,
    NUM_PENDING,
    STATUS,
    WRONG_LAST_SEQUENCE,
    decode_key,
    direct_get_api,
    encode_key,
    kv_stream,
    kv_subject,
)
from ._types import Disposition, ExecutionState
from ._wire import decode_envelope, encode_envelope
from ._work_stream import new_task_headers, placement

logger = logging.getLogger("docket_nats.groups")

# How long a group's records are kept (the bucket's max age): its key stays taken,
# and a member redelivered within it still counts once.
GROUP_RECORDS_AGE = timedelta(days=7)

# Groups whose state and outcome batches a process keeps at hand (see Tally).
CACHED_GROUPS = 256

# Subjects per batched direct get (the server answers at most 1,024).
DIRECT_GET_BATCH = 1000

# The callback's keyword argument that receives the member outcomes.
OUTCOMES_PARAMETER = "outcomes"


class MemberOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How one member of a group ended, as its callback receives it.

    `state` is COMPLETED, FAILED (after its retries) or CANCELLED; `result` is the
    return value (msgpack, so a dataclass arrives as a dict); `error` names the
    exception of a failed member, or why it never ran.
    """

    key: str
    state: ExecutionState
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is ExecutionState.COMPLETED


@dataclass(frozen=True)
class GroupProgress:
    """Members that reached a final state (`done`, failures included), failed ones, all."""

    done: int
    failed: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done == self.total


class ThenTask(msgspec.Struct, array_like=True):
    """A task a group publishes once all its members have ended."""

    # Its envelope without the outcomes, its key and due time, and its priority
    # level (added last with a default: records written before priorities read).
    envelope: bytes
    key: str
    when: datetime
    level: int = NORMAL_LEVEL


@dataclass(frozen=True)
class GroupInfo:
    """A group whose members have not all ended, as snapshots list it."""

    key: str
    done: int
    failed: int
    total: int


class GroupState(msgspec.Struct, kw_only=True):
    total: int
    done: bytes
    failed: bytes
    # The callback's envelope without its outcomes (None: no callback), and its key.
    # What runs once every member has ended: the callback, or a chain's next step.
    then: list[ThenTask] = msgspec.field(default_factory=list["ThenTask"])
    # The group those tasks are members of (a chain's next step), if any.
    then_group: str | None = None
    # The ids of the batch records whose members' bits are set (see Tally).
    batches: list[str] = msgspec.field(default_factory=list[str])


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(GroupState)
_outcome_encoder = msgspec.msgpack.Encoder()
_keys_decoder = msgspec.msgpack.Decoder(list[str])
_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[tuple[int, msgspec.Raw]])


def new_bitmap(total: int) -> bytes:
    return bytes((total + 7) // 8)


def bit_count(bitmap: bytes) -> int:
    return sum(byte.bit_count() for byte in bitmap)


def with_bits(bitmap: bytes, indexes: Sequence[int]) -> bytes:
    changed = bytearray(bitmap)
    for index in indexes:
        changed[index // 8] |= 1 << (index % 8)
    return bytes(changed)


def is_set(bitmap: bytes, index: int) -> bool:
    return bool(bitmap[index // 8] & (1 << (index % 8)))


# -- keys --------------------------------------------------------------------------


def state_key(group: str) -> str:
    return f"{encode_key(group)}.state"


def members_key(group: str) -> str:
    return f"{encode_key(group)}.members"


def claim_key(group: str, index: int) -> str:
    return f"{encode_key(group)}.claim.{index}"


def batch_key(group: str, batch: str) -> str:
    return f"{encode_key(group)}.b.{batch}"


def then_message_id(group: str, index: int) -> str:
    return f"group-then:{group}:{index}"


# -- the bucket --------------------------------------------------------------------


class GroupStore:
    """Compare-and-set reads and writes on one docket's groups bucket."""

    def __init__(self, docket: DocketContext, kv: KeyValue) -> None:
        self.docket = docket
        self.kv = kv
        self.bucket = docket.names.bucket("groups")
        self.direct_api = direct_get_api(kv_stream(self.bucket))
        self.tally = Tally(self)

    async def put(self, key: str, value: bytes) -> None:
        await self.docket.connection.publish(kv_subject(self.bucket, key), value)

    async def create(self, key: str, value: bytes) -> int | None:
        """Write `key` if it has no value yet; its sequence, or None when taken."""
        return await self.write(key, value, 0)

    async def write(self, key: str, value: bytes, expected: int) -> int | None:
        headers = {EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected)}
        try:
            ack = await self.docket.connection.publish(kv_subject(self.bucket, key), value, headers)
        except APIError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return ack.seq

    async def read_state(self, group: str) -> tuple[GroupState, int] | None:
        try:
            entry = await self.kv.get(state_key(group))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return _state_decoder.decode(entry.value), entry.revision or 0

    async def members(self, group: str) -> list[str]:
        try:
            entry = await self.kv.get(members_key(group))
        except KeyNotFoundError:
            return []
        return _keys_decoder.decode(entry.value) if entry.value else []

    async def outcomes(self, group: str, state: GroupState) -> list[msgspec.Raw]:
        """Every member's outcome, in member order, from the committed batches.

        The batches this process committed are at hand (`Tally`); the others are
        read with batched direct gets, one request per thousand batches with no
        consumer to create (an ordered consumer cost ~10 ms more), and nats-py
        spends ~35 µs on every message it receives, hence batches, not a record
        per member.
        """
        found: dict[int, msgspec.Raw] = {}
        mine = self.tally.written.get(group, {})
        missing: list[str] = []
        for batch in state.batches:
            entries = mine.get(batch)
            if entries is None:
                missing.append(batch)
            else:
                found.update(entries)
        subjects = [kv_subject(self.bucket, batch_key(group, batch)) for batch in missing]
        for start in range(0, len(subjects), DIRECT_GET_BATCH):
            for data in await self._direct_get(subjects[start : start + DIRECT_GET_BATCH]):
                found.update(_batch_decoder.decode(data))
        absent = [index for index in range(state.total) if index not in found]
        if absent:
            raise RuntimeError(f"group {group!r}: outcomes of members {absent[:10]} not found")
        return [found[index] for index in range(state.total)]

    async def _direct_get(self, subjects: list[str]) -> list[bytes]:
        """The last message of each subject, in one request (a batched direct get)."""
        nc = self.docket.connection.nc
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(message: Msg) -> None:
            replies.put_nowait(message)

        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox, cb=on_reply)  # pyright: ignore[reportUnknownMemberType]
        found: list[bytes] = []
        try:
            request = {"multi_last": subjects, "batch": len(subjects)}
            await nc.publish(self.direct_api, json.dumps(request).encode(), reply=inbox)
            while True:
                reply = await asyncio.wait_for(
                    replies.get(), self.docket.connection.request_timeout
                )
                status = (reply.headers or {}).get(STATUS)
                if status is None:
                    found.append(reply.data)
                elif status in ("204", "404"):  # the end of the batch, or nothing
                    return found
                else:
                    raise RuntimeError(f"direct get refused: {reply.headers}")
        finally:
            await subscription.unsubscribe()


# One member's end waiting to be counted: its index, encoded outcome, whether it
# failed, and who waits for it to be stored.
Pending = tuple[int, bytes, bool, "asyncio.Future[None]"]


class Tally:
    """Counts members' ends: one batch record and one compare-and-set per write.

    Per group and process one writer at a time; the ends that arrive while a write
    is in flight go into the next write together (a thousand members ending at
    once cost tens of writes, not a thousand conflicting ones). A write keeps the
    members whose bit is not set yet, stores their outcomes as one batch record
    under a new id, then sets their bits and adds the id to the committed batches
    in one compare-and-set. So a member counts once, the outcome the callback
    receives is the one whose bit was set, and a batch whose writer lost the race
    or died before committing is ignored.
    """

    def __init__(self, store: GroupStore) -> None:
        self.store = store
        self._pending: dict[str, list[Pending]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        # The state and revision this process wrote last, per group in flight (saves
        # a read per write; a stale one only makes the compare-and-set fail).
        self._known: OrderedDict[str, tuple[GroupState, int]] = OrderedDict()
        # The outcome batches this process committed, per group in flight, so the
        # one that completes a group reads only the others' from the store.
        self.written: OrderedDict[str, dict[str, list[tuple[int, msgspec.Raw]]]] = OrderedDict()

    async def mark(self, group: str, index: int, outcome: bytes, failed: bool) -> None:
        """Return once the member's end is stored (and the callback published if it
        was the last)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(group, []).append((index, outcome, failed, done))
        if group not in self._writers:
            self._writers[group] = asyncio.create_task(self._write(group))
        await done

    async def _write(self, group: str) -> None:
        try:
            while batch := self._pending.pop(group, []):
                try:
                    await self._store(group, batch)
                except BaseException as error:
                    self._known.pop(group, None)
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    for *_, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            del self._writers[group]

    async def _store(self, group: str, batch: list[Pending]) -> None:
        store = self.store
        written_for: list[int] | None = None
        batch_id = ""
        entries: list[tuple[int, msgspec.Raw]] | None = None
        current = self._known.pop(group, None)
        while True:
            if current is None:
                current = await store.read_state(group)
                if current is None:
                    logger.warning("group %r has no state (expired?): ends not counted", group)
                    return
            state, revision = current
            fresh: dict[int, tuple[bytes, bool]] = {}
            for index, outcome, failed, _ in batch:
                if not is_set(state.done, index) and index not in fresh:
                    fresh[index] = (outcome, failed)
            if fresh:
                indexes = sorted(fresh)
                if indexes != written_for or entries is None:
                    batch_id = uuid.uuid4().hex[:16]
                    entries = [(index, msgspec.Raw(fresh[index][0])) for index in indexes]
                    await store.put(batch_key(group, batch_id), _batch_encoder.encode(entries))
                    written_for = indexes
                state.done = with_bits(state.done, indexes)
                state.failed = with_bits(state.failed, [i for i in indexes if fresh[i][1]])
                state.batches.append(batch_id)
                written = await store.write(state_key(group), encode_state(state), revision)
                if written is None:
                    current = None  # another process wrote meanwhile: read again
                    continue
                current = (state, written)
                remember(self.written, group, self.written.get(group, {}))[batch_id] = entries
            elif revision and written_for is None:
                # Every member here was counted before (a redelivery): decide on a
                # fresh read whether the callback still needs publishing.
                current = await store.read_state(group) or current
                state = current[0]
            if bit_count(state.done) >= state.total:
                try:
                    await publish_then(store, group, state)
                finally:
                    self.written.pop(group, None)
            else:
                remember(self._known, group, current)
            return


V = TypeVar("V")


def remember(cache: OrderedDict[str, V], group: str, value: V) -> V:
    """Keep `value` for `group`, forgetting the least recent group beyond the bound
    (a group another process completes is never popped here; a forgotten entry
    only costs a read)."""
    cache[group] = value
    cache.move_to_end(group)
    while len(cache) > CACHED_GROUPS:
        cache.popitem(last=False)
    return value


async def publish_then(store: GroupStore, group: str, state: GroupState) -> None:
    """Publish what runs after a group whose members have all ended (idempotent).

    Expected last sequence 0 on each task's key refuses a second copy while the
    first is queued or running; the Msg-Id drops one within the duplicate window
    after it ran; a copy that still gets through is acked unrun (`claim_then`).
    """
    if not state.then:
        return
    outcomes = msgspec.Raw(_outcome_encoder.encode(await store.outcomes(group, state)))
    names = store.docket.names

    async def one(index: int, task: ThenTask) -> None:
        envelope = decode_envelope(task.envelope)
        envelope.kwargs[OUTCOMES_PARAMETER] = outcomes
        subject, headers = placement(names, task.key, task.when, task.level)
        new_task_headers(names, task.key, headers)
        headers[MSG_ID] = then_message_id(group, index)
        headers[GROUP_THEN] = group
        headers[GROUP_THEN_INDEX] = str(index)
        if state.then_group is not None:
            headers.update(member_headers(state.then_group, index))
        try:
            await store.docket.connection.publish(subject, encode_envelope(envelope), headers)
        except APIError as error:
            if error.err_code != WRONG_LAST_SEQUENCE:
                raise
            logger.debug("group %r: %r is already queued", group, task.key)

    await asyncio.gather(*(one(index, task) for index, task in enumerate(state.then)))


async def claim_then(store: GroupStore, group: str, index: int, sequence: int) -> bool:
    """Whether the message with this stream sequence of a group's then-task may
    run: the first copy claims it (a key created once, one round trip); its own
    redelivery may run again; any other copy may not."""
    key = claim_key(group, index)
    if await store.create(key, str(sequence).encode()) is not None:
        return True
    try:
        entry = await store.kv.get(key)
    except KeyNotFoundError:
        return True  # records gone (expired): nothing to compare against
    return entry.value == str(sequence).encode()


async def report_member(store: GroupStore, group: str, index: int, outcome: MemberOutcome) -> None:
    """Record that a member ended (counted once however often it is reported)."""
    try:
        data = _outcome_encoder.encode(outcome)
    except (TypeError, ValueError, OverflowError) as error:
        outcome = msgspec.structs.replace(
            outcome, result=None, error=outcome.error or f"the result cannot be stored: {error}"
        )
        data = _outcome_encoder.encode(outcome)
    failed = outcome.state is not ExecutionState.COMPLETED
    await store.tally.mark(group, index, data, failed)


# -- one store per docket ------------------------------------------------------------

_stores: weakref.WeakKeyDictionary[DocketContext, tuple[object, asyncio.Future[GroupStore]]] = (
    weakref.WeakKeyDictionary()
)


async def group_store(docket: DocketContext) -> GroupStore:
    """The docket's groups store, its bucket created on first use."""
    js = docket.connection.js
    cached = _stores.get(docket)
    if cached is None or cached[0] is not js or _failed(cached[1]):
        cached = (js, asyncio.ensure_future(_open(docket)))
        _stores[docket] = cached
    if cached[1].done():
        return cached[1].result()
    return await asyncio.shield(cached[1])


def _failed(pending: asyncio.Future[GroupStore]) -> bool:
    return pending.done() and (pending.cancelled() or pending.exception() is not None)


async def _open(docket: DocketContext) -> GroupStore:
    kv = await key_value_bucket(
        docket.connection.js,
        docket.names.bucket("groups"),
        history=1,
        replicas=docket.replicas,
        ttl=GROUP_RECORDS_AGE.total_seconds(),
        direct=True,  # outcomes are read with batched direct gets
    )
    return GroupStore(docket, kv)


# -- what a member's message says ----------------------------------------------------


def member_headers(group: str, index: int) -> dict[str, str]:
    return {GROUP: group, GROUP_MEMBER: str(index)}


def membership(headers: dict[str, str] | None) -> tuple[str, int] | None:
    """The group and index a task message belongs to, if any."""
    if not headers or GROUP not in headers:
        return None
    return headers[GROUP], int(headers[GROUP_MEMBER])


def then_of(headers: dict[str, str] | None) -> tuple[str, int] | None:
    """The group (and index) whose then-task a message is, if it is one."""
    if not headers or GROUP_THEN not in headers:
        return None
    return headers[GROUP_THEN], int(headers.get(GROUP_THEN_INDEX, "0"))


# -- listing -----------------------------------------------------------------------


async def list_groups(docket: DocketContext, limit: int) -> list[GroupInfo]:
    """Up to `limit` groups whose members have not all ended, oldest write first
    ([] when this docket never had a group: the bucket is not created here).

    Batched direct gets over the state records (one request per `limit` of them),
    never reading outcomes.
    """
    js = docket.connection.js
    nc = docket.connection.nc
    bucket = docket.names.bucket("groups")
    try:
        await js.stream_info(kv_stream(bucket))
    except NotFoundError:
        return []
    prefix = kv_subject(bucket, "")
    found: list[GroupInfo] = []
    replies: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_reply(message: Msg) -> None:
        replies.put_nowait(message)

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, cb=on_reply)  # pyright: ignore[reportUnknownMemberType]
    try:
        start = 1
        while len(found) < limit:
            request = {"seq": start, "next_by_subj": f"{prefix}*.state", "batch": limit}
            await nc.publish(
                direct_get_api(kv_stream(bucket)), json.dumps(request).encode(), reply=inbox
            )
            while True:
                reply = await asyncio.wait_for(replies.get(), docket.connection.request_timeout)
                headers = reply.headers or {}
                if STATUS in headers:  # the end of this batch (204), or nothing (404)
                    break
                state = _state_decoder.decode(reply.data)
                done = bit_count(state.done)
                if done < state.total and len(found) < limit:
                    key = decode_key(headers[NATS_SUBJECT][len(prefix) :].split(".")[0])
                    found.append(GroupInfo(key, done, bit_count(state.failed), state.total))
            if headers.get(STATUS) != "204" or headers.get(NUM_PENDING, "0") == "0":
                break
            start = int(headers[LAST_SEQUENCE]) + 1
    finally:
        await subscription.unsubscribe()
    return found


# -- the handle ----------------------------------------------------------------------


@dataclass
class Group:
    """A group added with `Docket.group()`: its key, members, and control."""

    docket: DocketContext = field(repr=False)
    key: str
    member_keys: list[str]
    disposition: Disposition
    # What runs after it: its callback, or the members of a chain's next step.
    then_keys: list[str] = field(default_factory=list[str])

    @classmethod
    def of(cls, docket: DocketContext | HasContext, key: str) -> Group:
        """A handle on an existing group (progress and cancel read its records)."""
        return cls(context_of(docket), key, [], Disposition.LOADED)

    async def progress(self) -> GroupProgress:
        store = await group_store(self.docket)
        current = await store.read_state(self.key)
        if current is None:
            raise KeyError(f"no group {self.key!r}")
        state, _ = current
        return GroupProgress(bit_count(state.done), bit_count(state.failed), state.total)

    async def cancel(self) -> None:
        """Cancel every member that has not ended: queued and future ones are removed
        (and count as cancelled), running ones get the cancel notice and end as
        cancelled. The callback then runs with the outcomes, as after any end."""
        store = await group_store(self.docket)
        current = await store.read_state(self.key)
        if current is None:
            raise KeyError(f"no group {self.key!r}")
        state, _ = current
        keys = self.member_keys or await store.members(self.key)
        connection = self.docket.connection
        names = self.docket.names

        async def one(index: int, key: str) -> None:
            if is_set(state.done, index):
                return
            if await connection.purge(names.stream, names.any_state(key)):
                await record_cancelled(self.docket, key)
                outcome = MemberOutcome(
                    key=key, state=ExecutionState.CANCELLED, error="cancelled with its group"
                )
                await report_member(store, self.key, index, outcome)
            await connection.nc.publish(names.cancel(key), b"")

        await asyncio.gather(*(one(index, key) for index, key in enumerate(keys)))


def encode_state(state: GroupState) -> bytes:
    return _state_encoder.encode(state)


def encode_keys(keys: list[str]) -> bytes:
    return _outcome_encoder.encode(keys)
