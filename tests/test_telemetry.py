"""OpenTelemetry: the add span, the trace context in the message headers, and
the worker's run span linked to it (docket's span names and attributes).

The SDK provider is patched into docket_nats._telemetry for one test at a time
(not set globally) so that no other test records spans.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from docket_nats import Docket, Worker
from docket_nats import _telemetry as telemetry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    assert telemetry.ENABLED
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("docket_nats"))
    yield exporter
    provider.shutdown()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Tracer:
    return telemetry._tracer  # type: ignore[attr-defined]  # the patched SDK tracer


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


async def greet(name: str) -> None:
    pass


async def explode() -> None:
    raise ValueError("boom")


async def test_add_span_is_linked_from_the_run_span(
    docket: Docket, worker: Worker, exporter: InMemorySpanExporter, tracer: Tracer
) -> None:
    docket.register(greet)
    with tracer.start_as_current_span("request") as parent:
        execution = await docket.add(greet, key="greeting")("world")
    await worker.run_until_finished()

    spans = list(exporter.get_finished_spans())
    add = only(spans, "docket.add")
    run = only(spans, "greet")
    # The add span is a child of the caller's span, so the whole request is one trace.
    assert add.parent is not None
    assert add.parent.span_id == parent.get_span_context().span_id
    assert add.context is not None and run.context is not None
    assert add.context.trace_id == parent.get_span_context().trace_id
    assert add.attributes is not None and run.attributes is not None
    for span in (add, run):
        assert span.attributes is not None
        assert span.attributes["docket.name"] == docket.name
        assert span.attributes["docket.key"] == "greeting"
        assert span.attributes["docket.task"] == "greet"
        assert span.attributes["code.function.name"] == "greet"
        assert span.attributes["docket.attempt"] == 1
        assert span.attributes["docket.when"] == execution.when.isoformat()
    assert add.attributes["docket.disposition"] == "scheduled"

    # The run span is a consumer span of its own, linked to the add span.
    assert run.kind is SpanKind.CONSUMER
    assert [(link.context.trace_id, link.context.span_id) for link in run.links] == [
        (add.context.trace_id, add.context.span_id)
    ]
    assert run.status.status_code is StatusCode.OK


async def test_replace_and_scheduled_tasks_carry_the_context(
    docket: Docket, worker: Worker, exporter: InMemorySpanExporter, tracer: Tracer
) -> None:
    docket.register(greet)
    # Far enough ahead (past SCHEDULE_LEAD) to go through the server's message schedule.
    soon = datetime.now(UTC) + timedelta(milliseconds=800)
    with tracer.start_as_current_span("request"):
        await docket.replace(greet, soon, "later")("world")
    await worker.run_until_finished()

    spans = list(exporter.get_finished_spans())
    replace = only(spans, "docket.replace")
    run = only(spans, "greet")
    assert replace.context is not None
    # The schedule's copy onto the run subject kept the headers.
    assert [link.context.span_id for link in run.links] == [replace.context.span_id]


async def test_failed_task_span_has_error_status(
    docket: Docket, worker: Worker, exporter: InMemorySpanExporter
) -> None:
    docket.register(explode)
    await docket.add(explode)()  # no current span: nothing to link to
    await worker.run_until_finished()

    run = only(list(exporter.get_finished_spans()), "explode")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description is not None and "boom" in run.status.description
    assert [event.name for event in run.events] == ["exception"]
    assert run.events[0].attributes is not None
    assert run.events[0].attributes["exception.type"] == "ValueError"
    # The add span without a parent still exists, and its context reached the worker.
    add = only(list(exporter.get_finished_spans()), "docket.add")
    assert add.context is not None
    assert [link.context.span_id for link in run.links] == [add.context.span_id]


async def test_without_a_span_no_trace_header_is_sent(docket: Docket) -> None:
    """Without a configured SDK, spans are non-recording and nothing reaches the wire."""
    docket.register(greet)
    execution = await docket.add(greet, key="plain")("world")
    message = await docket.connection.js.get_last_msg(
        docket.names.stream, docket.names.run(execution.key)
    )
    assert "traceparent" not in (message.headers or {})


def test_a_provider_set_globally_still_gets_run_spans() -> None:
    """Without a provider the run span is skipped outright (nothing could record
    it); a provider set later (the usual `set_tracer_provider` at start-up, here
    in a process of its own: it is global and set once) gets its spans."""
    script = """
import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from docket_nats import _telemetry as telemetry
from docket_nats._types import TaskOutcome

execution = SimpleNamespace(
    message=None, function_name="greet", key="k", when=datetime.now(UTC), attempt=1
)
docket = SimpleNamespace(name="d")

async def run():
    return TaskOutcome(duration=None), False

async def main():
    before = telemetry._nothing_records()
    await telemetry.executing(docket, execution, run())
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    await telemetry.executing(docket, execution, run())
    print(before, telemetry._nothing_records(), [s.name for s in exporter.get_finished_spans()])

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "['greet']"]
