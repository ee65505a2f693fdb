"""Striking and restoring: rules in a KV bucket, watched by every Docket and Worker."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

import tests.worker_process as worker_process
from docket_nats import CurrentDocket, Disposition, Docket, Worker
from docket_nats._embedded import ServerProcess
from docket_nats._strike_list import StrikeList
from docket_nats._strike_rules import Operator
from tests.worker_process import Probe, spawn


async def process_order(customer_id: str, amount: int, docket: Docket = CurrentDocket()) -> None:
    """Reports that it ran (over the probe subject), with its customer."""
    await worker_process.report(docket, "done", customer_id)


async def send_email(customer_id: str, subject: str = "hello") -> None:
    pass


class Tier(Enum):
    GOLD = "gold"
    SILVER = "silver"


async def upgrade(tier: Tier, when: datetime, price: Decimal) -> None:
    pass


async def disposition(docket: Docket, function: Any, *args: Any, **kwargs: Any) -> Disposition:
    return (await docket.add(function)(*args, **kwargs)).disposition


async def until(strikes: StrikeList, condition: Callable[[], bool], within: float = 10) -> None:
    """Wait (bounded) until the strike list, changing, makes `condition` true."""
    changed = asyncio.Event()
    unsubscribe = strikes.on_change(changed.set)
    try:
        async with asyncio.timeout(within):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()


async def cli(url: str, docket_name: str, *arguments: str, status: int = 0) -> str:
    """Run `python -m docket_nats ...` in a process of its own; its stdout (or stderr
    when it is expected to fail)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        *arguments,
        "--url",
        url,
        "--docket",
        docket_name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == status, stderr.decode()
    return (stdout if status == 0 else stderr).decode()


# -- rules, operators, validation (one process) ------------------------------------


@pytest.mark.parametrize(
    "operator, value, struck, free",
    [
        ("==", 100, [100], [99, 101]),
        ("!=", 100, [99, 101], [100]),
        ("<", 100, [99], [100, 101]),
        ("<=", 100, [99, 100], [101]),
        (">", 100, [101], [99, 100]),
        (">=", 100, [100, 101], [99]),
        ("between", (10, 20), [10, 15, 20], [9, 21]),
        (Operator.GREATER_THAN, 100, [101], [100]),
    ],
)
async def test_each_operator(
    docket: Docket, operator: Any, value: Any, struck: list[int], free: list[int]
) -> None:
    await docket.strike(process_order, "amount", operator, value)
    for amount in struck:
        assert await disposition(docket, process_order, "c", amount) is Disposition.STRUCK
    for amount in free:
        assert await disposition(docket, process_order, "c", amount) is Disposition.SCHEDULED
    await docket.restore(process_order, "amount", operator, value)
    for amount in struck:
        assert await disposition(docket, process_order, "c", amount) is Disposition.SCHEDULED
    assert docket.strike_list.rules() == []


async def test_whole_task_by_function_or_name(docket: Docket) -> None:
    docket.register(process_order)
    await docket.strike("process_order")
    assert await disposition(docket, process_order, "c", 1) is Disposition.STRUCK
    assert await disposition(docket, send_email, "c") is Disposition.SCHEDULED
    await docket.restore(process_order)  # the function or its name: the same rule
    assert await disposition(docket, process_order, "c", 1) is Disposition.SCHEDULED


async def test_rule_for_every_task(docket: Docket) -> None:
    await docket.strike(None, "customer_id", "==", "blocked")
    assert await disposition(docket, process_order, "blocked", 1) is Disposition.STRUCK
    assert await disposition(docket, send_email, customer_id="blocked") is Disposition.STRUCK
    assert await disposition(docket, send_email, "fine") is Disposition.SCHEDULED
    # A task without that parameter is not concerned.
    assert await disposition(docket, upgrade, Tier.GOLD, datetime.now(UTC), Decimal(1)) is (
        Disposition.SCHEDULED
    )


async def test_rules_combine_as_any(docket: Docket) -> None:
    await docket.strike(process_order, "customer_id", "==", "a")
    await docket.strike(process_order, "amount", ">", 1000)
    assert await disposition(docket, process_order, "a", 1) is Disposition.STRUCK
    assert await disposition(docket, process_order, "b", 5000) is Disposition.STRUCK
    assert await disposition(docket, process_order, "b", 1) is Disposition.SCHEDULED


async def test_compound_rule_needs_all_conditions(docket: Docket) -> None:
    await docket.strike(process_order, customer_id="12345", amount=(">", 1000))
    assert await disposition(docket, process_order, "12345", 5000) is Disposition.STRUCK
    assert await disposition(docket, process_order, "12345", 50) is Disposition.SCHEDULED
    assert await disposition(docket, process_order, "99999", 5000) is Disposition.SCHEDULED
    # The positional condition and keywords make one rule; keyword order is irrelevant.
    await docket.restore(process_order, "amount", ">", 1000, customer_id="12345")
    assert docket.strike_list.rules() == []
    assert await disposition(docket, process_order, "12345", 5000) is Disposition.SCHEDULED


async def test_defaults_and_keywords_are_arguments(docket: Docket) -> None:
    await docket.strike(send_email, "subject", "==", "hello")  # the default value
    assert await disposition(docket, send_email, "c") is Disposition.STRUCK
    assert await disposition(docket, send_email, "c", subject="hello") is Disposition.STRUCK
    assert await disposition(docket, send_email, "c", "other") is Disposition.SCHEDULED


async def test_typed_values_survive_the_bucket(docket: Docket, nats_url: str) -> None:
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    await docket.strike(upgrade, "tier", "==", Tier.GOLD)
    await docket.strike(upgrade, "price", ">", Decimal("9.99"))
    await docket.strike(upgrade, "when", "<", moment)
    async with Docket(name=docket.name, url=nats_url) as other:  # rules decoded from KV
        later = moment + timedelta(days=1)
        assert await disposition(other, upgrade, Tier.GOLD, later, Decimal(1)) is (
            Disposition.STRUCK
        )
        assert await disposition(other, upgrade, Tier.SILVER, later, Decimal("10")) is (
            Disposition.STRUCK
        )
        assert await disposition(other, upgrade, Tier.SILVER, moment, Decimal(1)) is (
            Disposition.SCHEDULED
        )
        assert await disposition(other, upgrade, Tier.SILVER, moment - timedelta(1), 1) is (
            Disposition.STRUCK
        )


async def test_bad_rules_are_refused_before_storing(docket: Docket, nats_url: str) -> None:
    docket.register(process_order)
    with pytest.raises(ValueError, match="unknown strike operator"):
        await docket.strike(process_order, "amount", "~=", 5)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="no parameter 'colour'"):
        await docket.strike("process_order", "colour", "==", "red")
    with pytest.raises(ValueError, match="no parameter 'docket'"):  # a dependency, not an argument
        await docket.strike(process_order, "docket", "==", None)
    with pytest.raises(ValueError, match="no parameter 'colour'"):
        await docket.strike(process_order, customer_id="x", colour="red")
    with pytest.raises(ValueError, match="a task, a parameter"):
        await docket.strike()
    with pytest.raises(ValueError, match="between"):
        await docket.strike(process_order, "amount", "between", 5)
    with pytest.raises(TypeError, match="cannot strike on a object"):
        await docket.strike(process_order, "amount", "==", object())
    async with Docket(name=docket.name, url=nats_url) as fresh:
        assert fresh.strike_list.rules() == []


async def test_unregistered_task_name_is_accepted(docket: Docket) -> None:
    # The striking process need not have the task (e.g. the CLI): nothing to check.
    await docket.strike("somebody_elses_task", "anything", "==", 1)
    assert [str(rule) for rule in docket.strike_list.rules()] == [
        "somebody_elses_task(anything == 1)"
    ]


async def test_incomparable_types_do_not_match_and_warn_once(
    docket: Docket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="docket_nats.strikes")
    await docket.strike(None, "amount", ">", 1000)
    for _ in range(3):
        assert await disposition(docket, send_email, "c", "x") is Disposition.SCHEDULED
        assert await disposition(docket, process_order, "c", "lots") is Disposition.SCHEDULED
    warnings = [r for r in caplog.records if "cannot compare" in r.getMessage()]
    assert len(warnings) == 1, warnings


async def test_mapping_form_of_is_stricken(docket: Docket) -> None:
    await docket.strike(None, "customer_id", "==", "blocked")
    assert docket.strike_list.is_stricken({"customer_id": "blocked"})
    assert not docket.strike_list.is_stricken({"customer_id": "fine"})


# -- replication -------------------------------------------------------------------


async def test_another_docket_sees_changes_live(docket: Docket, nats_url: str) -> None:
    async with Docket(name=docket.name, url=nats_url) as other:
        await docket.strike(process_order, "customer_id", "==", "x")
        await until(other.strike_list, lambda: len(other.strike_list.rules()) == 1)
        assert await disposition(other, process_order, "x", 1) is Disposition.STRUCK
        await docket.restore(process_order, "customer_id", "==", "x")
        await until(other.strike_list, lambda: not other.strike_list.rules())
        assert await disposition(other, process_order, "x", 1) is Disposition.SCHEDULED


async def test_a_docket_opened_after_a_strike_has_it_at_once(docket: Docket, nats_url: str) -> None:
    await docket.strike(process_order, "customer_id", "==", "x")
    await docket.strike(None, "amount", "==", 3)
    async with Docket(name=docket.name, url=nats_url) as late:
        assert len(late.strike_list.rules()) == 2
        assert await disposition(late, process_order, "x", 1) is Disposition.STRUCK


async def test_struck_work_already_queued_is_dropped_by_the_worker(
    docket: Docket, worker: Worker
) -> None:
    """As docket: a queued task struck before it runs is dropped, not kept for a restore."""
    probe = await Probe.start(docket)
    await docket.add(process_order)("queued-before", 1)
    await docket.strike(process_order, "customer_id", "==", "queued-before")
    await docket.restore(process_order, "customer_id", "==", "queued-before")
    await docket.strike(process_order, "customer_id", "==", "queued-before")
    await docket.add(process_order)("other", 1)
    await worker.run_until_finished()
    assert [event.label for event in probe.events] == ["other"]
    await docket.restore(process_order, "customer_id", "==", "queued-before")
    await worker.run_until_finished()
    assert [event.label for event in probe.events] == ["other"]  # not brought back


async def test_cli_strike_from_another_process_stops_a_worker_here(
    docket: Docket, worker: Worker, nats_url: str
) -> None:
    probe = await Probe.start(docket)
    await docket.add(process_order)("12345", 5000)  # queued before the strike
    await docket.add(process_order)("12345", 10)
    output = await cli(
        nats_url, docket.name, "strike", "process_order", "customer_id", "==", "12345",
        "amount", ">", "int:1000",
    )  # fmt: skip
    assert "Struck process_order(" in output
    await until(docket.strike_list, lambda: len(docket.strike_list.rules()) == 1)
    listed = json.loads(await cli(nats_url, docket.name, "strikes", "--json"))
    assert [(c["parameter"], c["operator"], c["value"]) for c in listed[0]["conditions"]] == [
        ("amount", ">", 1000),
        ("customer_id", "==", "12345"),
    ]
    await worker.run_until_finished()
    assert [event.label for event in probe.events] == ["12345"]  # only the small order ran
    assert await disposition(docket, process_order, "12345", 5000) is Disposition.STRUCK

    await cli(
        nats_url, docket.name, "restore", "process_order", "customer_id", "==", "12345",
        "amount", ">", "int:1000",
    )  # fmt: skip
    await until(docket.strike_list, lambda: not docket.strike_list.rules())
    assert await disposition(docket, process_order, "12345", 5000) is Disposition.SCHEDULED
    await worker.run_until_finished()
    assert [event.label for event in probe.events] == ["12345", "12345"]
    assert "No strike rules" in await cli(nats_url, docket.name, "strikes")
    refused = await cli(
        nats_url, docket.name, "strike", "process_order", "amount", "~", "1", status=2
    )
    assert "unknown strike operator" in refused


async def test_worker_process_started_after_a_strike_never_runs_struck_work(
    docket: Docket, nats_url: str, tmp_path: Path
) -> None:
    docket.register(worker_process.note)
    probe = await Probe.start(docket)
    await docket.add(worker_process.note)("early")  # queued, then struck
    await docket.strike(worker_process.note, "label", "==", "early")
    await docket.add(worker_process.note)("next")
    worker = await spawn(tmp_path / "worker.log", nats_url, docket.name)
    try:
        await probe.wait_event("done", "next")
        assert [event.label for event in probe.events] == ["next"]
        assert "🗙" in worker.log_text() or "struck" in worker.log_text()
        await docket.restore(worker_process.note, "label", "==", "early")
        # The restore reaches the worker process within milliseconds, but nothing
        # here can tell when: re-add (bounded) until it runs again.
        async with asyncio.timeout(10):
            while not probe.matching("done", "early"):
                await docket.add(worker_process.note)("early")
                try:
                    await probe.wait_event("done", "early", 1, 0.2)
                except AssertionError:
                    pass
    finally:
        await worker.kill()


async def test_rules_survive_a_server_restart_and_the_watch_follows(
    own_server: ServerProcess, docket_name: str
) -> None:
    async with Docket(name=docket_name, url=own_server.url) as watching:
        await watching.strike(process_order, "customer_id", "==", "kept")
        await asyncio.to_thread(own_server.stop)
        await asyncio.to_thread(own_server.start)
        async with Docket(name=docket_name, url=own_server.url) as after:
            assert [str(rule) for rule in after.strike_list.rules()] == [
                "process_order(customer_id == 'kept')"
            ]
            # The first Docket's watch came back with the connection: it sees
            # changes made after the restart.
            await after.strike(process_order, "customer_id", "==", "new")
            await after.restore(process_order, "customer_id", "==", "kept")
            await until(
                watching.strike_list,
                lambda: (
                    [str(r) for r in watching.strike_list.rules()]
                    == ["process_order(customer_id == 'new')"]
                ),
                within=20,
            )
            # The index follows the rules, not only the listing.
            assert await disposition(watching, process_order, "new", 1) is Disposition.STRUCK
            assert await disposition(watching, process_order, "kept", 1) is Disposition.SCHEDULED
            # ... and keeps following live changes on its new watch.
            await after.strike(None, "amount", "==", 7)
            await until(watching.strike_list, lambda: len(watching.strike_list.rules()) == 2)


def test_cli_values_are_typed_as_docket_types_them() -> None:
    from docket_nats.cli._strikes import conditions_of, typed_value

    assert typed_value("12345") == "12345"
    assert typed_value("int:5") == 5
    assert typed_value("bool:TRUE") is True
    assert typed_value("decimal.Decimal:9.99") == Decimal("9.99")
    assert typed_value("datetime.timedelta:30") == timedelta(seconds=30)
    assert conditions_of(["customer_id", "==", "x", "amount", "between", "int:1", "int:9"]) == [
        ("customer_id", Operator.EQUAL, "x"),
        ("amount", Operator.BETWEEN, (1, 9)),
    ]
    assert conditions_of(["flag"]) == [("flag", Operator.EQUAL, None)]  # docket's defaults
