"""Every decoder of bytes that reach a worker from the network, fuzzed (Hypothesis).

Anyone with access to the account can publish on a docket's subjects and write to
its buckets, so each decoder is given arbitrary bytes and arbitrary msgpack shaped
like what it expects. The property: it returns a value or raises its one typed
error (which its caller parks or logs); nothing else escapes.

Examples per test: DOCKET_NATS_FUZZ_EXAMPLES (default 300; CI's fault step sets
more, see the report of issue #14).
"""

from __future__ import annotations

import math
import os
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from docket_nats._execution_progress import ProgressRecord, decode_progress
from docket_nats._state_records import ExecutionRecord, decode_record
from docket_nats._strike_rules import Rule, UndecodableRule, decode_rule
from docket_nats._subjects import Names, encode_key
from docket_nats._wire import TaskEnvelope, UndecodableMessage, decode_envelope
from docket_nats._worker_registry import Heartbeat, decode_heartbeat
from docket_nats.worker._cancellations import parse_cancel_notice
from docket_nats.worker._early_hold import due_time
from docket_nats.worker._leases import parse_ack_wait

EXAMPLES = int(os.environ.get("DOCKET_NATS_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

# Any msgpack value: what a hostile publisher can encode.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def shaped(
    fields: list[str], field_values: st.SearchStrategy[Any] = values
) -> st.SearchStrategy[bytes]:
    """msgpack maps with (some of) the expected field names and any values."""
    return st.dictionaries(
        st.sampled_from(fields) | st.text(max_size=6), field_values, max_size=len(fields) + 1
    ).map(msgspec.msgpack.encode)


def payloads(
    fields: list[str], field_values: st.SearchStrategy[Any] = values
) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=200) | shaped(fields, field_values) | values.map(msgspec.msgpack.encode)
    )


ENVELOPE_FIELDS = list(TaskEnvelope.__struct_fields__)
# A strike value may be a tagged list: ["int", "12"], ["timedelta", d, s, us], ...
TAGS = ["int", "decimal", "datetime", "date", "time", "timedelta", "uuid", "tuple", "frozenset"]
tagged = st.builds(
    lambda tag, rest: [tag, *rest], st.sampled_from(TAGS), st.lists(values, max_size=3)
)
conditions = st.lists(
    st.tuples(
        st.text(max_size=8),
        st.sampled_from(["==", "!=", "<", ">", "between", "?"]),
        values | tagged,
    ),
    max_size=3,
)
rules = st.fixed_dictionaries(
    {"v": values, "function": st.none() | st.text(max_size=8), "conditions": conditions}
).map(msgspec.msgpack.encode)


@fuzz
@given(payloads(ENVELOPE_FIELDS))
def test_task_envelopes(data: bytes) -> None:
    try:
        envelope = decode_envelope(data)
    except UndecodableMessage:
        return
    assert isinstance(envelope, TaskEnvelope)


@fuzz
@given(st.text(max_size=40) | st.sampled_from(["nan", "inf", "-inf", "1e400", "NaN"]))
def test_the_due_time_header(stamp: str) -> None:
    """Docket-When: a task is held until this instant, so only a finite one counts."""

    class Message:
        headers = {"Docket-When": stamp}

    due = due_time(Message())  # type: ignore[arg-type]  # only .headers is read
    assert due is None or math.isfinite(due)


@fuzz
@given(st.binary(max_size=40) | st.sampled_from([b"nan", b"inf", b"-1", b"0", b"1e400", b"\xff"]))
def test_ack_wait_notices(data: bytes) -> None:
    ack_wait = parse_ack_wait(data)
    assert ack_wait is None or (math.isfinite(ack_wait) and ack_wait > 0)


@fuzz
@given(st.binary(max_size=40) | st.text(max_size=10).map(str.encode))
def test_cancel_notices(data: bytes) -> None:
    notice = parse_cancel_notice(data)
    assert notice is None or notice is False or (type(notice) is int and notice >= 0)


@fuzz
@given(st.text(max_size=40))
def test_task_keys_in_subjects(token: str) -> None:
    """The last subject token names the key; a token encode_key never made is kept."""
    key = Names.key_of(f"docket.x.run.{token}")
    assert isinstance(key, str)
    assert Names.key_of(f"docket.x.run.{encode_key(token)}") == token


@fuzz
@given(payloads(["v", "function", "conditions"]) | rules)
# Found by this test (uuid.UUID(5) raised AttributeError past decode_rule):
@example(msgspec.msgpack.encode({"v": 1, "conditions": [["a", "==", ["uuid", 5]]]}))
def test_strike_rules(data: bytes) -> None:
    try:
        rule = decode_rule("someone.else", data)
    except UndecodableRule:
        return
    assert isinstance(rule, Rule)


@fuzz
@given(payloads(list(ProgressRecord.__struct_fields__)))
def test_progress_records(data: bytes) -> None:
    progress = decode_progress(data)
    assert progress is None or isinstance(progress, ProgressRecord)


@fuzz
@given(payloads(list(ExecutionRecord.__struct_fields__)))
def test_state_records(data: bytes) -> None:
    """read_record turns msgspec.DecodeError into "no record" (logged)."""
    try:
        record = decode_record(data)
    except msgspec.DecodeError:
        return
    assert isinstance(record, ExecutionRecord)


@fuzz
@given(payloads(list(Heartbeat.__struct_fields__)))
def test_heartbeats(data: bytes) -> None:
    beat = decode_heartbeat("worker", data)
    assert beat is None or isinstance(beat, Heartbeat)
