"""docket parity: the shapes behind `docket.execution` and `docket.strikelist` names
(test_public_api.py checks that they import)."""

# No `from __future__ import annotations` here: compact_signature shows the hints
# as objects (a string hint would be shown as the string, as in docket).
import inspect
from datetime import timedelta
from typing import Annotated, get_type_hints

from docket_nats import Docket, ExecutionState, Retry, TaskKey, Worker
from docket_nats._execution_progress import ExecutionProgress as ProgressModuleClass
from docket_nats.execution import (
    ExecutionProgress,
    ProgressEvent,
    StateEvent,
    compact_signature,
    get_signature,
)
from docket_nats.strikelist import Operator, Restore, Strike, StrikeList


async def shipping(
    order: int,
    carrier: str = "post",
    *,
    boxes: Annotated[list[int], "sizes"] = [],  # noqa: B006  (a default to show)
    key: str = TaskKey(),
    retry: Retry = Retry(attempts=2),
) -> None:
    pass


def test_events_are_typed_dicts_with_docket_keys() -> None:
    assert set(get_type_hints(StateEvent)) == {
        "type",
        "key",
        "state",
        "when",
        "worker",
        "started_at",
        "completed_at",
        "error",
    }
    assert set(get_type_hints(ProgressEvent)) == {
        "type",
        "key",
        "current",
        "total",
        "message",
        "updated_at",
    }
    assert StateEvent.__required_keys__ == frozenset(get_type_hints(StateEvent))
    assert get_type_hints(StateEvent)["state"] is ExecutionState


def test_execution_progress_is_the_one_class() -> None:
    assert ExecutionProgress is ProgressModuleClass


def test_get_signature_is_inspect_signature_computed_once() -> None:
    first = get_signature(shipping)
    assert first == inspect.signature(shipping)
    assert get_signature(shipping) is first


def test_compact_signature_shows_what_a_caller_passes() -> None:
    # Dependencies collapse into one trailing "...", generics show their first argument.
    assert compact_signature(get_signature(shipping)) == (
        "order: int, carrier: str = 'post', boxes: list = [], ..."
    )

    async def bare(a, b=2) -> None:  # type: ignore[no-untyped-def]
        pass

    assert compact_signature(inspect.signature(bare)) == "a, b = 2"
    assert compact_signature(inspect.signature(lambda: None)) == ""


def test_strike_and_restore_instructions() -> None:
    strike = Strike("shipping", "carrier", Operator.EQUAL, "post")
    assert (strike.function, strike.parameter, strike.value) == ("shipping", "carrier", "post")
    assert strike.operator is Operator.EQUAL and strike.direction == "strike"
    assert strike.call_repr() == "shipping(carrier == 'post')"
    assert strike.labels() == {
        "docket.task": "shipping",
        "docket.parameter": "carrier",
        "docket.operator": "==",
        "docket.value": "'post'",
    }
    everything = Restore(None, None, "between", None)
    assert everything.direction == "restore" and everything.operator is Operator.BETWEEN
    assert everything.call_repr() == "*(* between *)"
    assert everything.labels() == {}


async def test_strike_list_takes_instructions(docket: Docket) -> None:
    strikes = docket.strike_list
    assert isinstance(strikes, StrikeList)
    # (A mapping is checked against the rules for every task, as in docket.)
    await strikes.send_instruction(Strike(None, "carrier", "==", "post"))
    assert strikes.is_stricken({"carrier": "post"})
    assert not strikes.is_stricken({"carrier": "courier"})
    await strikes.send_instruction(Restore(None, "carrier", "==", "post"))
    assert not strikes.is_stricken({"carrier": "post"})


async def test_a_struck_instruction_stops_the_task(docket: Docket) -> None:
    ran: list[int] = []

    async def ship(order: int) -> None:
        ran.append(order)

    docket.register(ship)
    await docket.strike_list.send_instruction(Strike("ship", "order", ">", 10))
    await docket.add(ship)(5)
    await docket.add(ship)(50)
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        await worker.run_until_finished()
    assert ran == [5]
