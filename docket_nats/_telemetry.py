"""OpenTelemetry spans for adding and running tasks, as docket emits them.

`Docket.add` / `replace` open a `docket.add` span and carry the current trace
context to the worker in the message headers (W3C `traceparent` / `tracestate`);
the worker runs the task inside a CONSUMER span named after the task, LINKED to
the add span (not its child: an add can run much later, and a retry links to
the attempt before it). Attributes follow docket: docket.name, docket.task,
docket.key, docket.when, docket.attempt, code.function.name.

The OpenTelemetry API is an optional extra (`docket-nats[otel]`). Whether it is
importable is checked once, here: without it every hook below is a no-op that
costs a function call. With the API but no SDK / tracer provider configured,
the spans are OpenTelemetry's non-recording ones and `inject` writes no header
(there is no valid span context), so plain users pay nothing on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._context import DocketContext
    from .dependencies._base import TaskOutcome
    from .execution import Execution

_NOTHING: AbstractContextManager[None] = nullcontext()


def _attributes(docket: DocketContext, execution: Execution) -> dict[str, str | int]:
    return {
        "docket.name": docket.name,
        "docket.task": execution.function_name,
        "docket.key": execution.key,
        "docket.when": execution.when.isoformat(),
        "docket.attempt": execution.attempt,
        "code.function.name": execution.function_name,
    }


try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # pragma: no cover - exercised only without the extra
    _importable = False

    def adding(
        docket: DocketContext, execution: Execution, headers: dict[str, str], replace: bool
    ) -> AbstractContextManager[None]:
        """Without OpenTelemetry: nothing to trace."""
        return _NOTHING

    async def executing(
        docket: DocketContext,
        execution: Execution,
        call: Awaitable[tuple[TaskOutcome, bool]],
    ) -> tuple[TaskOutcome, bool]:
        return await call

else:
    _importable = True
    _tracer = trace.get_tracer("docket_nats")
    _default_tracer = _tracer
    # The providers OpenTelemetry hands out while no SDK is set (looked up by
    # name: the API does not export them).
    _NO_SDK: tuple[type, ...] = tuple(
        getattr(trace, name)
        for name in ("ProxyTracerProvider", "NoOpTracerProvider")
        if isinstance(getattr(trace, name, None), type)
    )

    def _nothing_records() -> bool:
        """No tracer provider is set: every span would be a non-recording one."""
        return _tracer is _default_tracer and isinstance(trace.get_tracer_provider(), _NO_SDK)

    @contextmanager
    def _recording_add(
        span: trace.Span, execution: Execution, headers: dict[str, str]
    ) -> Generator[None]:
        with trace.use_span(span, end_on_exit=True):
            propagate.inject(headers)  # the add span's context, for the worker's link
            yield
            span.set_attribute("docket.disposition", execution.disposition.value)

    def adding(
        docket: DocketContext, execution: Execution, headers: dict[str, str], replace: bool
    ) -> AbstractContextManager[None]:
        """Wrap one publish in a `docket.add` span; put its context into `headers`."""
        # Attributes are set after the recording check, not passed at start:
        # building them is most of the cost when nothing records (a sampler
        # therefore decides on the span name and parent only).
        span = _tracer.start_span("docket.replace" if replace else "docket.add")
        if not span.is_recording():
            # No SDK configured: skip making the span current (the hot path of
            # every add). A caller's own valid context is still passed on.
            if span.get_span_context().is_valid:
                propagate.inject(headers)
            return _NOTHING
        span.set_attributes(_attributes(docket, execution))
        return _recording_add(span, execution, headers)

    async def executing(
        docket: DocketContext,
        execution: Execution,
        call: Awaitable[tuple[TaskOutcome, bool]],
    ) -> tuple[TaskOutcome, bool]:
        """Await `call` (the task's run) inside its span, linked to the add span."""
        if _nothing_records():
            # The span would not record: skip reading the add's context from the
            # headers and starting it (~8% of a no-op run's CPU, measured).
            return await call
        message = execution.message
        headers: dict[str, str] = (message.headers if message is not None else None) or {}
        origin = trace.get_current_span(propagate.extract(headers)).get_span_context()
        span = _tracer.start_span(
            execution.function_name,
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(origin)] if origin.is_valid else None,
        )
        if not span.is_recording():
            return await call
        span.set_attributes(_attributes(docket, execution))
        with trace.use_span(span, end_on_exit=True):
            outcome, handled = await call
            error = outcome.exception
            # A cancellation (worker shutdown, a cancel) is not the task failing.
            if error is None or isinstance(error, asyncio.CancelledError):
                span.set_status(Status(StatusCode.OK))
            else:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            return outcome, handled


# Whether the OpenTelemetry API is installed (the hooks are live).
ENABLED = _importable

__all__ = ["ENABLED", "adding", "executing"]
