"""Logging: Logged call lines, run outcomes, TaskLogger, the three output formats,
secrets kept out, and the built-in tasks through the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Annotated, Any, cast

import pytest
import structlog

from docket_nats import Docket, Execution, Logged, Retry, TaskLogger, Worker, _run_log
from docket_nats._log_setup import configure as configure_logging
from docket_nats._log_setup import formatter
from docket_nats._run_log import _took, log_outcome
from docket_nats.annotations import call_format
from docket_nats.dependencies import current_worker
from docket_nats.dependencies._base import (
    current_docket,
    current_execution,
    current_worker_context,
    format_duration,
)

SECRET = "4111-1111-SECRET-CARD"
CONTEXT = ("docket.name", "docket.task", "docket.key", "docket.attempt", "docket.worker")


async def process_payment(
    order_id: Annotated[str, Logged],
    credit_card: str,
    amount: Annotated[float, Logged],
    trace_id: Annotated[str, Logged] = "",
) -> None:
    pass


async def sizes(
    items: Annotated[list[int], Logged(length_only=True)],
    mapping: Annotated[dict[str, int], Logged(length_only=True)],
    pair: Annotated[tuple[int, int], Logged(length_only=True)],
    unique: Annotated[set[int], Logged(length_only=True)],
    count: Annotated[int, Logged(length_only=True)],
    name: Annotated[str, Logged],
    hidden: list[int],
) -> None:
    pass


def worker_lines(caplog: pytest.LogCaptureFixture, key: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "docket_nats.worker" and getattr(r, "docket.key", None) == key
    ]


@pytest.fixture
def everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def all_output(records: list[logging.LogRecord]) -> str:
    """Every record as every format renders it, plus its raw attributes."""
    rendered: list[str] = []
    for record in records:
        rendered.append(repr(record.__dict__))
        for name in ("rich", "plain", "json"):
            rendered.append(formatter(name, colors=True).format(record))  # type: ignore[arg-type]
    return "\n".join(rendered)


class Waiter(logging.Handler):
    """Wakes the test when a record matching `predicate` arrives."""

    def __init__(self, predicate: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__(logging.DEBUG)
        self.predicate = predicate
        self.loop = asyncio.get_running_loop()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.predicate(record):
            self.loop.call_soon_threadsafe(self.seen.set)


# -- call lines ------------------------------------------------------------------


async def test_start_and_finish_lines_show_only_logged_arguments(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    docket.register(process_payment)
    execution = await docket.add(process_payment)(
        "12345", credit_card=SECRET, amount=150.0, trace_id="abc-123"
    )
    await worker.run_until_finished()

    arguments = "'12345', credit_card=..., amount=150.0, trace_id='abc-123'"
    call = f"process_payment({arguments}){{{execution.key}}}"
    start, finish = worker_lines(everything, execution.key)
    assert start.levelno == finish.levelno == logging.INFO
    assert start.getMessage().startswith("↪ [") and start.getMessage().endswith("] " + call)
    assert finish.getMessage().startswith("↩ [") and finish.getMessage().endswith("] " + call)
    assert finish.outcome == "success"
    assert finish.duration >= 0
    assert start.punctuality >= 0
    for record in (start, finish):
        assert getattr(record, "docket.task") == "process_payment"
        assert getattr(record, "docket.attempt") == 1
        assert getattr(record, "docket.worker") == worker.name
        assert getattr(record, "docket.name") == docket.name
    assert SECRET not in all_output(everything.records)


async def test_length_only_formats(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    docket.register(sizes)
    execution = await docket.add(sizes)(
        list(range(150)), {str(i): i for i in range(5)}, (1, 2), {1, 2, 3}, 7, "bob", [9, 9]
    )
    await worker.run_until_finished()
    start, _ = worker_lines(everything, execution.key)
    assert start.getMessage().endswith(
        f"sizes([len 150], {{len 5}}, (len 2), {{len 3}}, 7, 'bob', ...){{{execution.key}}}"
    )


def test_call_format_rules() -> None:
    def task(
        a: Annotated[int, Logged],
        b: Annotated[str, Logged(length_only=True)],
        c: int,
        *rest: int,
        d: Annotated[bytes, Logged] = b"",
        **more: int,
    ) -> None: ...

    fmt = call_format(task)
    assert fmt is call_format(task)  # worked out once per function
    assert fmt.arguments((1, "hello", 3), {"d": b"x", "e": 5}) == "1, [len 5], ..., d=b'x', e=..."
    # docket's rule: positionals beyond the named parameters pair with names in order.
    assert fmt.arguments((1,), {}) == "1"

    def plain(x: int, y: int) -> None: ...

    assert call_format(plain).arguments((1, 2), {"z": 3}) == "..., ..., z=..."
    assert call_format(plain).arguments((10, 20), {"z": 30}) == "..., ..., z=..."


def test_logged_under_postponed_annotations_and_unresolvable_names() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "from typing import Annotated\n"
        "from docket_nats import Logged\n"
        "def task(a: Annotated[int, Logged], b: Missing, c: Annotated[str, Logged]): ...\n",
        namespace,
    )
    assert call_format(namespace["task"]).arguments((1, 2, "x"), {}) == "1, ..., 'x'"


async def test_execution_call_repr_is_docket_s(docket: Docket) -> None:
    execution = Execution(
        docket,
        process_payment,
        ("1",),
        {"credit_card": SECRET, "amount": 2.5},
        "k",
        datetime.now(UTC),
        1,
    )
    assert execution.call_repr() == "process_payment('1', credit_card=..., amount=2.5){k}"


# -- outcomes --------------------------------------------------------------------


async def test_a_failure_logs_its_traceback_without_secrets(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    async def charge(card: str, amount: Annotated[int, Logged]) -> None:
        vault = {"card": card}  # a local holding the secret, as real code would
        raise RuntimeError(f"declined ({len(vault)} cards)")

    docket.register(charge)
    execution = await docket.add(charge)(SECRET, amount=3)
    await worker.run_until_finished()

    _, finish = worker_lines(everything, execution.key)
    assert finish.levelno == logging.ERROR
    assert finish.outcome == "failed"
    assert finish.getMessage().endswith(f"charge(..., amount=3){{{execution.key}}} (failed)")
    assert finish.exc_info is not None and isinstance(finish.exc_info[1], RuntimeError)
    output = all_output(everything.records)
    assert "RuntimeError: declined (1 cards)" in output  # the traceback is there
    assert SECRET not in output  # its frame locals are not


async def test_retry_lines_show_logged_arguments_only(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    async def flaky(
        token: str, n: Annotated[int, Logged], retry: Retry = Retry(attempts=2)
    ) -> None:
        raise ValueError("nope")

    docket.register(flaky)
    execution = await docket.add(flaky)(SECRET, n=1)
    await worker.run_until_finished()
    lines = [r.getMessage() for r in everything.records if r.name.startswith("docket_nats")]
    assert any(f"flaky(..., n=1){{{execution.key}}}" in line for line in lines)
    assert SECRET not in all_output(everything.records)


async def test_a_cancelled_run(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def long(n: Annotated[int, Logged]) -> None:
        started.set()
        await asyncio.sleep(30)

    docket.register(long)
    cancelled = Waiter(lambda r: getattr(r, "outcome", None) == "cancelled")
    logging.getLogger().addHandler(cancelled)
    running = asyncio.create_task(worker.run_forever())
    try:
        execution = await docket.add(long)(1)
        await started.wait()
        await docket.cancel(execution.key)
        async with asyncio.timeout(5):
            await cancelled.seen.wait()
    finally:
        logging.getLogger().removeHandler(cancelled)
        worker.stop()
        await running
    (line,) = [
        r
        for r in worker_lines(everything, execution.key)
        if getattr(r, "outcome", "") == "cancelled"
    ]
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith("✗ [")
    assert line.getMessage().endswith(f"long(1){{{execution.key}}} (cancelled)")


async def test_a_run_struck_on_the_worker(
    docket: Docket, worker: Worker, everything: pytest.LogCaptureFixture
) -> None:
    async def refund(account: Annotated[str, Logged], secret: str) -> None:
        raise AssertionError("a struck task must not run")

    docket.register(refund)
    execution = await docket.add(refund)("acct-9", SECRET)
    await docket.strike(refund, "account", "==", "acct-9")  # after add: the worker refuses it
    await worker.run_until_finished()
    (line,) = worker_lines(everything, execution.key)
    assert line.levelno == logging.WARNING
    assert line.outcome == "struck"  # type: ignore[attr-defined]
    assert line.getMessage() == f"🗙 refund('acct-9', ...){{{execution.key}}} (struck)"
    assert SECRET not in all_output(everything.records)


async def test_log_outcome_for_other_handlers(
    docket: Docket, everything: pytest.LogCaptureFixture
) -> None:
    execution = Execution(
        docket, process_payment, ("9",), {"credit_card": SECRET}, "k2", datetime.now(UTC), 2
    )
    log_outcome(execution, "retry scheduled", 0.25, detail="in 1s, attempt 3 of 3", worker_name="w")
    log_outcome(execution, "struck")
    retry, struck = everything.records
    assert (
        retry.getMessage() == "↫ [   250ms] process_payment('9', credit_card=...){k2}"
        " (retry scheduled: in 1s, attempt 3 of 3)"
    )
    assert (
        retry.outcome,
        getattr(retry, "docket.worker"),
        retry.duration,
    ) == ("retry scheduled", "w", 0.25)
    assert struck.levelno == logging.WARNING
    assert struck.getMessage() == "🗙 process_payment('9', credit_card=...){k2} (struck)"


def test_durations_have_dockets_fixed_width() -> None:
    assert format_duration(0.012) == "    12ms"
    assert format_duration(99.5) == " 99500ms"
    assert format_duration(250) == "   250s "


def test_run_line_durations_read_as_format_duration() -> None:
    values = [0.0, -0.0, -0.2, 1e-9, 0.0005, 0.0015, 0.0025, 0.1234, 1.0, 99.9994, 99.9995]
    values += [99.99999, 100.0, 150.4, float("inf"), float("nan")]
    values += [(k + 0.5) / 1000 for k in range(0, 100_000, 7)]
    rng = random.Random(7)
    values += [rng.uniform(0, 100) * rng.choice([1, 1e-2, 1e-4]) for _ in range(20_000)]
    for seconds in values:
        assert _took(seconds) == format_duration(seconds), seconds


async def test_nothing_is_built_when_info_is_off(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="docket_nats")
    docket.register(process_payment)
    await docket.add(process_payment)("1", credit_card=SECRET, amount=1.0)
    await worker.run_until_finished()
    assert [
        r for r in caplog.records if r.name == "docket_nats.worker" and r.levelno < logging.WARNING
    ] == []


# -- TaskLogger ------------------------------------------------------------------


async def test_task_logger_entered_directly_carries_the_context(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    execution = Execution(docket, process_payment, (), {}, "key-1", datetime.now(UTC), 3)
    tokens = (
        current_docket.set(docket),
        current_worker.set(worker),
        current_execution.set(execution),
        current_worker_context.set(worker.context),
    )
    try:
        async with TaskLogger() as logger:  # type: ignore[attr-defined]
            assert isinstance(logger, logging.LoggerAdapter)
            logger.info("hello %s", "there", extra={"order": 42})
            logger.warning("plain")
    finally:
        current_worker_context.reset(tokens[3])
        current_execution.reset(tokens[2])
        current_worker.reset(tokens[1])
        current_docket.reset(tokens[0])
    hello, plain = caplog.records
    assert hello.name == "docket_nats.task.process_payment"
    assert hello.getMessage() == "hello there"
    expected = {
        "docket.name": docket.name,
        "docket.task": "process_payment",
        "docket.key": "key-1",
        "docket.attempt": 3,
        "docket.worker": worker.name,
        "docket.when": execution.when.isoformat(),
    }
    for record in (hello, plain):
        assert {k: getattr(record, k) for k in expected} == expected
    assert hello.order == 42
    assert not hasattr(plain, "order")


async def test_task_logger_injected_into_a_task(
    docket: Docket, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def greet(
        name: Annotated[str, Logged], logger: logging.LoggerAdapter[logging.Logger] = TaskLogger()
    ) -> None:
        logger.info("greeting %s", name, extra={"extra_field": "yes"})

    docket.register(greet)
    execution = await docket.add(greet, key="greet-1")("ada")
    await worker.run_until_finished()
    (record,) = [r for r in caplog.records if r.name == "docket_nats.task.greet"]
    assert record.getMessage() == "greeting ada"
    assert getattr(record, "docket.key") == execution.key == "greet-1"
    assert getattr(record, "docket.worker") == worker.name
    assert record.extra_field == "yes"


# -- formats ---------------------------------------------------------------------


@pytest.fixture
def json_output() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_json_lines_carry_the_task_fields(
    docket: Docket, worker: Worker, json_output: Callable[[], list[dict[str, Any]]]
) -> None:
    app_logger = logging.getLogger("myapp.billing")

    async def bill(
        customer: Annotated[str, Logged],
        card: str,
        logger: logging.LoggerAdapter[logging.Logger] = TaskLogger(),
    ) -> None:
        logger.info("billing", extra={"invoice": 7})
        app_logger.info("from the application's own logger")
        raise RuntimeError("card declined")

    docket.register(bill)
    execution = await docket.add(bill)("acme", SECRET)
    await worker.run_until_finished()
    lines = [line for line in json_output() if line.get("docket.key") == execution.key]
    by_event = {
        line["event"].split(" [")[0] if line["event"][0] in "↪↩" else line["event"]: line
        for line in lines
    }
    billing = by_event["billing"]
    assert billing["invoice"] == 7 and billing["logger"] == "docket_nats.task.bill"
    assert billing["level"] == "info" and "timestamp" in billing
    for line in lines:
        assert line["docket.task"] == "bill"
        assert line["docket.worker"] == worker.name
        assert line["docket.name"] == docket.name
        assert line["docket.attempt"] == 1
    # The application's own logger got the run's context from the worker.
    assert by_event["from the application's own logger"]["logger"] == "myapp.billing"
    (failed,) = [line for line in lines if line.get("outcome") == "failed"]
    assert failed["level"] == "error"
    assert "RuntimeError: card declined" in failed["exception"]
    assert isinstance(failed["duration"], float)
    assert failed["event"].endswith(f"bill('acme', ...){{{execution.key}}} (failed)")
    assert SECRET not in json.dumps(json_output())


def test_human_formats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("docket_nats.worker").info(
        "↩ [3ms] f(){k}", extra={"docket.key": "k", "outcome": "success", "order": 5}
    )
    (record,) = caplog.records
    plain = formatter("plain").format(record)
    timestamp, rest = plain.split(" ", 1)
    assert datetime.fromisoformat(timestamp).tzinfo is not None  # full ISO time, UTC
    assert rest == "INFO docket_nats.worker: ↩ [3ms] f(){k} order=5"  # context is for JSON
    assert "\x1b[" not in plain
    rich = formatter("rich", colors=True).format(record)
    assert "\x1b[" in rich and "↩ [3ms] f(){k}" in rich and "docket.key" not in rich
    assert "\x1b[" not in formatter("rich", colors=False).format(record)
    with pytest.raises(ValueError):
        formatter("xml")  # type: ignore[arg-type]


def test_direct_rendering_matches_the_processor_chain() -> None:
    """plain and json render the usual record without the processor chain: the
    same text, field for field and in order, as the chain gives it."""
    when = datetime.now(UTC)
    fake_docket = cast(Docket, SimpleNamespace(context=SimpleNamespace(name="d")))
    running = Execution(fake_docket, process_payment, ("1",), {}, "run-key", when, 2)

    def record(
        level: int = logging.INFO, extra: dict[str, Any] | None = None, **kwargs: Any
    ) -> logging.LogRecord:
        return logging.getLogger("docket_nats.worker").makeRecord(
            "docket_nats.worker",
            level,
            __file__,
            1,
            "%s [%s] %s",
            ("↪", "3ms", "f(){k}"),
            kwargs.pop("exc_info", None),
            extra=extra,
            **kwargs,
        )

    context = {
        "docket.name": "d",
        "docket.task": "f",
        "docket.key": "k",
        "docket.when": "w",
        "docket.attempt": 1,
        "docket.worker": "w1",
        "punctuality": 0.25,
    }
    try:
        raise ValueError("boom")
    except ValueError:
        error = sys.exc_info()
    records = [
        record(),
        record(extra=context),
        record(logging.WARNING, extra={**context, "outcome": "struck", "duration": 1.5}),
        record(extra={"order": 5, "note": "a b", **context}),
        record(25, extra={"order": [1, 2]}),
        record(extra={"level": "x", "timestamp": "t", "event": "e"}),
        record(extra={"exception": "not a traceback"}),
        record(logging.ERROR, extra=context, exc_info=error),
        record(extra={"obj": object}, sinfo="Stack (most recent call last):\n  here"),
    ]
    for name in ("plain", "json", "rich"):
        direct = cast(structlog.stdlib.ProcessorFormatter, formatter(name))  # type: ignore[arg-type]
        chain = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=direct.foreign_pre_chain, processors=direct.processors
        )
        for made in records:
            before = dict(vars(made))
            assert direct.format(made) == chain.format(made), (name, vars(made))
            assert vars(made) == before  # the record is left as it was
        token = current_execution.set(running)  # a record logged while a task runs
        try:
            assert direct.format(records[0]) == chain.format(records[0])
            assert direct.format(records[3]) == chain.format(records[3])
            bound = structlog.contextvars.bind_contextvars(request="r-1", duration=2.0)
            try:
                for made in records[:4]:
                    assert direct.format(made) == chain.format(made)
                    assert name == "rich" or "r-1" in direct.format(made)
            finally:
                structlog.contextvars.reset_contextvars(**bound)
        finally:
            current_execution.reset(token)


def test_importing_configures_nothing() -> None:
    code = (
        "import logging, structlog, docket_nats, docket_nats._log_setup, docket_nats.cli;"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers;"
        "assert not structlog.is_configured();"
        "assert logging.getLogger().level == logging.WARNING"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_configure_routes_structlog_and_stdlib_to_one_handler() -> None:
    code = (
        "import io, json, logging, structlog\n"
        "from docket_nats._log_setup import configure, get_logger\n"
        "stream = io.StringIO()\n"
        "configure('json', 'DEBUG', stream=stream)\n"
        "configure('json', 'DEBUG', stream=stream)\n"  # replaces, does not duplicate
        "logging.getLogger('docket_nats.x').debug('from stdlib', extra={'a': 1})\n"
        "get_logger('y').info('from structlog', b=2)\n"
        "lines = [json.loads(l) for l in stream.getvalue().splitlines()]\n"
        "assert [l['event'] for l in lines] == ['from stdlib', 'from structlog'], lines\n"
        "assert lines[0]['a'] == 1 and lines[1]['b'] == 2\n"
        "assert lines[1]['logger'] == 'docket_nats.y'\n"
        "assert logging.getLogger().level == logging.DEBUG\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- built-in tasks through the CLI ------------------------------------------------


def cli(nats_url: str, docket_name: str, *arguments: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "docket_nats",
        *arguments,
        "--url",
        nats_url,
        "--docket",
        docket_name,
    ]


async def run_cli(command: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_builtin_tasks_through_the_cli(
    nats_url: str,
    docket_name: str,
    docket: Docket,
    worker: Worker,
    everything: pytest.LogCaptureFixture,
) -> None:
    def finished(task: str, outcome: str) -> Callable[[logging.LogRecord], bool]:
        return lambda r: (
            getattr(r, "docket.task", None) == task and getattr(r, "outcome", None) == outcome
        )

    waiters = [
        Waiter(finished("trace", "success")),
        Waiter(finished("sleep", "success")),
        Waiter(finished("fail", "failed")),
    ]
    root = logging.getLogger()
    for waiter in waiters:
        root.addHandler(waiter)
    running = asyncio.create_task(worker.run_forever())
    try:
        out = await run_cli(cli(nats_url, docket_name, "tasks", "trace", "hello from the cli"))
        assert out.startswith("Added trace task '") and repr(docket_name) in out
        await run_cli(cli(nats_url, docket_name, "tasks", "sleep", "0.05"))
        await run_cli(cli(nats_url, docket_name, "tasks", "fail", "on purpose"))
        async with asyncio.timeout(15):
            for waiter in waiters:
                await waiter.seen.wait()
    finally:
        worker.stop()
        await running
        for waiter in waiters:
            root.removeHandler(waiter)

    messages = [r.getMessage() for r in everything.records]
    (traced,) = [r for r in everything.records if r.name == "docket_nats.task.trace"]
    assert traced.getMessage().startswith("hello from the cli: '")
    assert f"added to docket {docket_name!r}" in traced.getMessage()
    assert getattr(traced, "docket.worker") == worker.name
    assert any("trace('hello from the cli'){" in m for m in messages)
    assert any(m == "Sleeping for 0.05 seconds" for m in messages)
    assert any("sleep(0.05){" in m and m.startswith("↩") for m in messages)
    # fail: Retry(attempts=2) runs it twice; the last attempt logs the traceback.
    fails = [
        r for r in everything.records if "fail('on purpose'){" in r.getMessage() and r.exc_info
    ]
    assert len(fails) == 2
    assert "on purpose: " in str(fails[-1].exc_info[1])  # type: ignore[index]


async def test_worker_cli_json_output(nats_url: str, docket_name: str, docket: Docket) -> None:
    execution = await docket.add("trace")("json please")
    process = await asyncio.create_subprocess_exec(
        *cli(nats_url, docket_name, "worker", "--until-finished", "--logging-format", "json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    mine = [line for line in lines if line.get("docket.key") == execution.key]
    events = [line["event"] for line in mine]
    assert any(e.startswith("↪") and "trace('json please')" in e for e in events)
    assert any(e.startswith("json please: ") for e in events)
    finish = next(line for line in mine if line.get("outcome") == "success")
    assert finish["docket.task"] == "trace" and finish["docket.name"] == docket_name
    assert finish["logger"] == "docket_nats.worker" and finish["level"] == "info"


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1


@pytest.fixture
def counted() -> Iterator[CountingStream]:
    """The plain handler configure() installs, writing to a stream that counts flushes."""
    stream = CountingStream()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("plain", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_the_configured_handler_flushes_by_the_next_loop_turn(
    counted: CountingStream,
) -> None:
    for number in range(3):
        logging.getLogger("docket_nats.test").info("line %d", number)
    assert counted.getvalue().count("\n") == 3 and counted.flushes == 0  # one write...
    await asyncio.sleep(0)
    assert counted.flushes == 1  # ...flushed once, when the loop turns
    logging.getLogger("docket_nats.test").warning("now")
    assert counted.flushes == 2  # warnings are not held back


def test_a_flush_left_on_a_stopped_loop_does_not_hold_back_another_loop(
    counted: CountingStream,
) -> None:
    stream = counted
    log = logging.getLogger("docket_nats.test")

    async def log_as_the_loop_stops() -> None:
        asyncio.get_running_loop().stop()
        log.info("last line of a stopped loop")  # its flush would come on the next turn

    async def log_and_turn() -> None:
        log.info("a line on a new loop")
        await asyncio.sleep(0)

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.create_task(log_as_the_loop_stops())
        first.run_forever()
        assert stream.flushes == 0
        second.run_until_complete(log_and_turn())
        assert stream.flushes == 1 and stream.getvalue().count("\n") == 2
        log.info("no loop in this thread")
        assert stream.flushes == 2  # at once
    finally:
        first.close()
        second.close()


async def test_run_lines_are_complete_log_records(
    docket: Docket, everything: pytest.LogCaptureFixture
) -> None:
    execution = Execution(docket, process_payment, ("1",), {}, "k3", datetime.now(UTC), 1)
    log_outcome(execution, "success", 0.5)
    (fast,) = everything.records
    reference = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert set(vars(reference)) <= set(vars(fast))
    assert fast.levelname == "INFO" and fast.name == "docket_nats.worker"
    assert abs(fast.created - reference.created) < 5 and fast.process == os.getpid()
    assert fast.thread == reference.thread and fast.threadName == reference.threadName

    # An application's record factory (tracing ids, ...) still makes the records.
    everything.clear()
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.trace_id = "t-1"  # type: ignore[attr-defined]
        return record

    logging.setLogRecordFactory(factory)
    try:
        log_outcome(execution, "success", 0.5)
    finally:
        logging.setLogRecordFactory(previous)
    (made,) = everything.records
    assert made.trace_id == "t-1"  # type: ignore[attr-defined]
    assert made.getMessage() == fast.getMessage()
    assert getattr(made, "docket.key") == "k3"


@contextlib.contextmanager
def sole_handler(format: str) -> Iterator[io.StringIO]:
    """configure()'s handler as the only one a worker line reaches, as in the CLI.
    pytest's handlers sit on the root (and on loggers that did not propagate when
    the test began), so it goes on `docket_nats`, which stops propagating."""
    stream = io.StringIO()
    root, package = logging.getLogger(), logging.getLogger("docket_nats")
    level = root.level
    handler = configure_logging(format, "INFO", stream=stream)  # type: ignore[arg-type]
    root.removeHandler(handler)
    package.addHandler(handler)
    package.propagate = False
    try:
        yield stream
    finally:
        package.removeHandler(handler)
        package.propagate = True
        root.setLevel(level)


def _run_lines(execution: Execution) -> None:
    """One line of each shape: start, success, an outcome with detail, one without a duration."""
    _run_log.log_start(execution, "w-1")
    log_outcome(execution, "success", 0.5, worker_name="w-1")
    log_outcome(execution, "retry scheduled", 0.25, detail="in 1s", worker_name="w-1")
    log_outcome(execution, "struck", worker_name="w-1")


@pytest.mark.parametrize("format", ["plain", "json"])
def test_run_lines_without_records_read_as_the_records_render(format: str) -> None:
    """With no other handler, run lines are written without a LogRecord; the text
    is what the same handler renders from the record (times aside)."""
    fake_docket = cast(Docket, SimpleNamespace(context=SimpleNamespace(name="d")))
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1)  # not late: [0ms]
    execution = Execution(fake_docket, process_payment, ("1", SECRET, 9.5), {}, "k", later, 1)
    handed: list[logging.LogRecord] = []
    call_handlers = logging.Logger.callHandlers

    def counting(self: logging.Logger, record: logging.LogRecord) -> None:
        handed.append(record)
        call_handlers(self, record)

    with sole_handler(format) as stream, pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.Logger, "callHandlers", counting)
        _run_lines(execution)
        assert handed == []  # no record was made for a handler
        patch.undo()
        direct = stream.getvalue().splitlines()
        stream.seek(0)
        stream.truncate()
        # A second handler needs the records: the same lines go the record's way.
        records: list[logging.LogRecord] = []
        other = logging.Handler()
        other.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("docket_nats").addHandler(other)
        try:
            _run_lines(execution)
        finally:
            logging.getLogger("docket_nats").removeHandler(other)
        rendered = stream.getvalue().splitlines()
    assert len(records) == len(direct) == len(rendered) == 4
    assert SECRET not in "".join(direct)
    if format == "plain":
        # `2026-...Z LEVEL docket_nats.worker: message`: the same but for the time.
        assert [line.split(" ", 1)[1] for line in direct] == [
            line.split(" ", 1)[1] for line in rendered
        ]
        assert direct[0].split(" ", 1)[1] == (
            "INFO docket_nats.worker: ↪ [     0ms] process_payment('1', ..., 9.5){k}"
        )
        assert direct[3].split(" ", 2)[1] == "WARNING"
        return
    ours, theirs = [json.loads(line) for line in direct], [json.loads(line) for line in rendered]
    for mine, reference in zip(ours, theirs, strict=True):
        assert list(mine) == list(reference)  # the same fields in the same order
        for field in ("timestamp", "punctuality"):
            mine.pop(field, None)
            reference.pop(field, None)
        assert mine == reference
    assert ours[0]["docket.worker"] == "w-1" and ours[1]["outcome"] == "success"
    assert ours[2]["duration"] == 0.25 and ours[3]["level"] == "warning"


def test_run_lines_take_the_records_way_when_something_needs_it() -> None:
    """An application's record factory and structlog context still reach the output."""
    fake_docket = cast(Docket, SimpleNamespace(context=SimpleNamespace(name="d")))
    execution = Execution(
        fake_docket, process_payment, ("1", SECRET, 9.5), {}, "k", datetime.now(UTC), 1
    )
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.trace_id = "t-1"  # type: ignore[attr-defined]
        return record

    with sole_handler("json") as stream:
        logging.setLogRecordFactory(factory)
        try:
            log_outcome(execution, "success", 0.5)
        finally:
            logging.setLogRecordFactory(previous)
        structlog.contextvars.bind_contextvars(request_id="r-9")
        try:
            log_outcome(execution, "success", 0.5)
        finally:
            structlog.contextvars.clear_contextvars()
        log_outcome(execution, "success", 0.5)  # and without either, directly again
    traced, bound, plain = (json.loads(line) for line in stream.getvalue().splitlines())
    assert traced["trace_id"] == "t-1" and "request_id" not in traced
    assert bound["request_id"] == "r-9" and bound["outcome"] == "success"
    assert "trace_id" not in plain and "request_id" not in plain
