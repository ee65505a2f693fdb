"""The wire format: typed arguments, refusals at add(), pickle opt-in, key encoding.

Arguments travel as msgpack and are decoded on the worker with the task's own
annotations, so a task receives the types it declares.
"""

from __future__ import annotations

import enum
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from docket_nats import Disposition, Docket, Worker
from docket_nats._subjects import Names, decode_key, encode_key
from docket_nats._wire import (
    ENVELOPE_VERSION,
    TaskEnvelope,
    UndecodableMessage,
    decode_envelope,
    encode_envelope,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: float


@dataclass(frozen=True)
class Segment:
    start: Point
    end: Point


class Customer(msgspec.Struct):
    name: str
    tags: list[str]


class Opaque:
    """A plain class: msgspec cannot encode it, pickle can."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.secret == self.secret

    def __hash__(self) -> int:
        return hash(self.secret)


async def messages_in_stream(docket: Docket) -> int:
    info = await docket.connection.js.stream_info(docket.names.stream)
    return info.state.messages


# -- typed round trip ------------------------------------------------------------------


async def test_typed_arguments_arrive_as_their_declared_types(
    docket: Docket, worker: Worker
) -> None:
    received: dict[str, Any] = {}

    async def typed(
        point: Point,
        customer: Customer,
        moment: datetime,
        naive: datetime,
        day: date,
        ident: uuid.UUID,
        amount: Decimal,
        color: Color,
        points: list[Point],
        numbers: set[int],
        pair: tuple[int, str],
        maybe: Point | None,
        nothing: Point | None = None,
        *,
        priority: Priority,
        nested: dict[str, list[Segment]],
        labels: frozenset[str],
    ) -> None:
        received.update(locals())

    sent: dict[str, Any] = {
        "point": Point(1, 2.5),
        "customer": Customer("ada", ["vip"]),
        "moment": datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=5.5))),
        "naive": datetime(2031, 2, 3, 4, 5, 6),
        "day": date(2031, 2, 3),
        "ident": uuid.uuid4(),
        "amount": Decimal("12345.6789"),
        "color": Color.BLUE,
        "points": [Point(0, 0.0), Point(-1, 1e-9)],
        "numbers": {3, 1, 2},
        "pair": (7, "seven"),
        "maybe": Point(5, 5.0),
        "priority": Priority.HIGH,
        "nested": {"route": [Segment(Point(0, 0.0), Point(1, 1.0))]},
        "labels": frozenset({"a", "b"}),
    }
    positional = [
        sent[name]
        for name in (
            "point",
            "customer",
            "moment",
            "naive",
            "day",
            "ident",
            "amount",
            "color",
            "points",
            "numbers",
            "pair",
            "maybe",
        )
    ]
    keywords = {name: sent[name] for name in ("priority", "nested", "labels")}
    await docket.add(typed)(*positional, **keywords)
    await worker.run_until_finished()

    assert received, "the task did not run"
    for name, value in sent.items():
        assert received[name] == value, name
        assert type(received[name]) is type(value), name
    assert received["nothing"] is None
    assert received["moment"].tzinfo is not None
    assert received["naive"].tzinfo is None
    assert isinstance(received["points"][0], Point)
    assert isinstance(received["nested"]["route"][0].start, Point)


async def test_none_for_an_optional_argument(docket: Docket, worker: Worker) -> None:
    received: list[Point | None] = []

    async def optional(point: Point | None) -> None:
        received.append(point)

    await docket.add(optional)(None)
    await docket.add(optional)(point=Point(1, 1.0))
    await worker.run_until_finished()
    assert sorted(received, key=repr) == [None, Point(1, 1.0)]


async def test_unannotated_parameters_get_plain_data(docket: Docket, worker: Worker) -> None:
    received: list[Any] = []

    async def untyped(value, *rest, **extra) -> None:  # type: ignore[no-untyped-def]
        received.append((value, rest, extra))

    await docket.add(untyped)(Point(1, 2.0), Color.RED, flag=True)
    await worker.run_until_finished()
    # Without an annotation there is nothing to decode into: msgpack's own types.
    assert received == [({"x": 1, "y": 2.0}, ("red",), {"flag": True})]


async def test_typed_var_positional_and_keyword(docket: Docket, worker: Worker) -> None:
    received: list[Any] = []

    async def variadic(*points: Point, **colors: Color) -> None:
        received.append((points, colors))

    await docket.add(variadic)(Point(1, 1.0), Point(2, 2.0), first=Color.RED)
    await worker.run_until_finished()
    assert received == [((Point(1, 1.0), Point(2, 2.0)), {"first": Color.RED})]


async def test_a_value_that_does_not_fit_its_annotation_is_passed_as_sent(
    docket: Docket, worker: Worker
) -> None:
    # docket does not enforce annotations; neither do we: the task runs.
    received: list[Any] = []

    async def loose(count: int) -> None:
        received.append(count)

    await docket.add(loose)("not a number")
    await worker.run_until_finished()
    assert received == ["not a number"]
    assert await docket.dead_letters() == []


async def test_string_annotations_still_decode_to_dataclasses(
    docket: Docket, worker: Worker
) -> None:
    import future_annotations_tasks as module

    module.received.clear()
    await docket.add(module.take_order)(module.Order(7, ["tea", "cake"]))
    # One annotation names a TYPE_CHECKING-only import that cannot be resolved:
    # the order must still arrive as an Order.
    await docket.add(module.take_order_with_hint_only_name)(module.Order(8, []))
    await worker.run_until_finished()
    assert sorted(module.received, key=repr) == [
        module.Order(7, ["tea", "cake"]),
        module.Order(8, []),
    ]
    assert all(isinstance(order, module.Order) for order in module.received)


# -- refusals at add() -------------------------------------------------------------------


async def test_unencodable_argument_fails_at_add_naming_the_parameter(docket: Docket) -> None:
    async def takes(first: int, thing: object, *rest: object, callback: object = None) -> None:
        raise AssertionError("must never run")

    with pytest.raises(TypeError, match=r"'thing'.*takes\(\)"):
        await docket.add(takes)(1, Opaque("x"))
    with pytest.raises(TypeError, match="'callback'"):
        await docket.add(takes)(1, 2, callback=lambda: None)
    with pytest.raises(TypeError, match=r"'rest\[1\]'"):
        await docket.add(takes)(1, 2, 3, object())
    # A batch reports per execution, as docket's add_many does.
    (failed,) = await docket.add_many([docket.call(takes)(1, {"nested": Opaque("y")})])
    assert failed.disposition is Disposition.FAILED
    assert isinstance(failed.schedule_exception, TypeError)
    assert "'thing'" in str(failed.schedule_exception)
    # Nothing was published.
    assert await messages_in_stream(docket) == 0


# -- pickle opt-in ---------------------------------------------------------------------


async def test_pickle_opt_in_round_trips_arbitrary_objects(nats_url: str, docket_name: str) -> None:
    received: list[Opaque] = []

    async def takes_opaque(thing: Opaque, many: list[Opaque]) -> None:
        received.append(thing)
        received.extend(many)

    async with Docket(name=docket_name, url=nats_url, allow_pickle=True) as docket:
        await docket.add(takes_opaque)(Opaque("one"), [Opaque("two")])
        async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
            await worker.run_until_finished()
    assert received == [Opaque("one"), Opaque("two")]


async def test_a_worker_without_pickle_parks_pickled_arguments(
    nats_url: str, docket_name: str
) -> None:
    ran: list[object] = []

    async def takes_opaque(thing: Opaque) -> None:
        ran.append(thing)

    async with (
        Docket(name=docket_name, url=nats_url, allow_pickle=True) as producer,
        Docket(name=docket_name, url=nats_url) as consumer,
    ):
        execution = await producer.add(takes_opaque, key="pickled")(Opaque("payload"))
        consumer.register(takes_opaque)
        async with Worker(consumer, minimum_check_interval=timedelta(milliseconds=20)) as worker:
            await worker.run_until_finished()
        letters = await consumer.dead_letters()
    assert ran == []
    assert [letter.key for letter in letters] == [execution.key]
    assert "pickle" in letters[0].reason
    assert letters[0].function == "takes_opaque"


async def test_without_opt_in_nothing_is_pickled(docket: Docket) -> None:
    async def takes(thing: object) -> None: ...

    assert docket.allow_pickle is False
    with pytest.raises(TypeError, match="allow_pickle"):
        await docket.add(takes)(Opaque("x"))


# -- envelopes -------------------------------------------------------------------------


def test_envelope_round_trip_and_refusals() -> None:
    envelope = TaskEnvelope(key="k", function="f", when=datetime.now(UTC), attempt=3)
    assert decode_envelope(encode_envelope(envelope)) == envelope
    with pytest.raises(UndecodableMessage):
        decode_envelope(b"\x00not msgpack")
    newer = TaskEnvelope(v=ENVELOPE_VERSION + 1, key="k", function="f", when=datetime.now(UTC))
    with pytest.raises(UndecodableMessage, match="newer"):
        decode_envelope(encode_envelope(newer))


# -- key encoding ---------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9_=-]+")
_ALPHABET = (
    "abcXYZ019_-"  # kept as is
    ".*> \t\n\r/\\=:$%#@!?'\"{}[]()"  # NATS wildcards, separators, whitespace, escape char
    "éßüñ中文鍵ключ"  # non-ASCII
    "🔑😀\U0010fffd\x00\x7f"  # astral, control characters
)


def random_keys(count: int, seed: int = 20261129) -> list[str]:
    generator = random.Random(seed)
    keys = {"", "=", "==", "=3D", "a\n", "\nA", "...", "*", ">", " ", "x" * 300}
    while len(keys) < count:
        length = generator.randint(1, 24)
        keys.add("".join(generator.choice(_ALPHABET) for _ in range(length)))
    return sorted(keys)


def test_key_encoding_round_trips_into_one_safe_token() -> None:
    keys = random_keys(3000)
    tokens = [encode_key(key) for key in keys]
    for key, token in zip(keys, tokens, strict=True):
        assert decode_key(token) == key, repr(key)
        # One subject token (no '.', '*', '>', whitespace) and a valid KV key.
        assert _TOKEN.fullmatch(token), (key, token)
    # Distinct keys never share a subject.
    assert len(set(tokens)) == len(keys)


def test_foreign_tokens_decode_without_raising() -> None:
    # Someone else's message on a docket subject must not crash a worker.
    for token in ["=ZZ", "=4", "abc=", "=FF", "=C3", "=E2=82"]:
        assert isinstance(decode_key(token), str)


async def test_a_foreign_message_is_parked_not_retried(docket: Docket, worker: Worker) -> None:
    subject = f"{docket.names.prefix}.run.=ZZ"
    await docket.connection.js.publish(subject, b"not an envelope")
    await worker.run_until_finished()
    (letter,) = await docket.dead_letters()
    assert letter.key == "=ZZ" and letter.data == b"not an envelope"


def test_plain_keys_stay_readable() -> None:
    for key in ["task-1", "user_42", "ABC", "0"]:
        assert encode_key(key) == key
    assert encode_key("a.b") != "a.b"


def test_subjects_name_their_key() -> None:
    names = Names("some-docket")
    for key in random_keys(200, seed=7):
        assert Names.key_of(names.run(key)) == key
        assert Names.key_of(names.sched(key)) == key
        assert names.any_state(key).count(".") == 3


def test_docket_names_are_validated() -> None:
    for bad in ["", "has.dot", "has space", "star*", "x" * 65]:
        with pytest.raises(ValueError):
            Names(bad)
    Names("ok_name-1")
