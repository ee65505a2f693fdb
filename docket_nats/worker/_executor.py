"""The executor: turns delivered task messages into running tasks.

Its mailbox receives messages from the puller; each becomes an asyncio task that
decodes, checks strikes, runs the function (sync ones in the worker's thread
pool), and acks. Nothing is dropped: what can never run (undecodable, unknown
task, arguments that do not fit, delivered too often) is parked as a dead letter
with the reason; an internal error hands the message back for redelivery.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg

from .. import _telemetry as telemetry
from .._context import DocketContext
from .._groups import MemberOutcome, claim_then, group_store, membership, report_member, then_of
from .._metrics import registry as metrics
from .._metrics import task_labels
from .._priority import current_priority
from .._run_log import log_finish, log_outcome, log_start
from .._subjects import Names
from .._types import ExecutionState, TaskOutcome
from .._wire import (
    ArgumentError,
    DeadLetter,
    UndecodableMessage,
    decode_envelope,
    encode_envelope,
    task_signature,
)
from ..dependencies._admission import AdmissionBlocked
from ..dependencies._base import Dependency
from ..dependencies._plans import plan_for
from ..dependencies._running import run_task
from ..dependencies._shared import WorkerShared
from ..execution import Execution, TaskFunction, UnknownTask, from_envelope
from ._actors import Actor, cancel_until_done
from ._mailbox import Mailbox
from ._recorder import StateRecorder
from ._refused_runs import settle_blocked
from ._slots import Slots

logger = logging.getLogger("docket_nats.worker")

# A message delivered this many times never finished: its worker died each time.
# Park it instead of letting it take down worker after worker.
MAX_DELIVERIES = 10
# On an internal error, hand the message back after this long.
RETRY_INTERNAL_ERROR_AFTER = 1.0


@dataclass
class Running:
    """A message this worker holds, and the task working on it."""

    message: Msg
    task: asyncio.Task[None] | None = None
    execution: Execution | None = None
    started: float = field(default_factory=time.monotonic)
    # The task body was reached (recorded as started), not just decoded.
    began: bool = False
    # Cancelled by the fence: the message is left alone (no ack, no nak).
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What the executor needs of its Worker's settings."""

    worker_name: str
    concurrency: int
    fallback_task: TaskFunction | None
    # Deliveries a message may have before it is parked instead of run.
    max_deliveries: int
    # The worker-level dependencies that wrap every run, and its Shared values.
    dependencies: Mapping[str, Dependency[Any]]
    shared: WorkerShared | None
    # Keys whose runs are counted (Worker.run_at_most); others are not, so a
    # long-running worker keeps no per-key state.
    counted_keys: frozenset[str] = frozenset()


class Executor(Actor):
    name = "executor"

    def __init__(self, docket: DocketContext, settings: RunSettings, slots: Slots) -> None:
        self.docket = docket
        self.names: Names = docket.names
        self.settings = settings
        self.worker_name = settings.worker_name
        self.slots = slots
        self.recorder = StateRecorder(docket, settings.worker_name)  # state and results
        # Delivered messages wait here (prefetched) until one of `concurrency`
        # run slots is free, highest priority first; the lease keeper renews them too.
        self._mailbox = Mailbox(docket.names)
        # Run slots free now; the run loop wakes when a message waits and one frees.
        self._free_slots = settings.concurrency
        self._wake = asyncio.Event()
        # Only while the run loop runs: a stopping worker starts nothing new.
        self._starting = False
        # The run loop's context (current docket and worker), for every run it
        # starts, including those started from a delivery in another actor's task.
        self._context = contextvars.copy_context()
        # Set on shutdown: a cancelled task is then handed back, not acked.
        self._shutting_down = False
        self._running: dict[int, Running] = {}
        # Runs started per counted key (Worker.run_at_most asks).
        self._started: Counter[str] = Counter()
        self._threads = ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix=f"docket-{settings.worker_name}"
        )

    # -- what the Worker asks ----------------------------------------------------

    def held(self) -> list[Msg]:
        """Every message this executor holds: running, or waiting for a run slot."""
        return [*(entry.message for entry in self._running.values()), *self._mailbox]

    def runs_started(self, key: str) -> int:
        return self._started[key]

    async def drain(self) -> None:
        """Hand back the messages that never started (the run loop is stopped):
        other workers run them now rather than after the grace."""
        while self._mailbox:
            message = self._mailbox.pop()
            await hand_back(message)
            self.slots.give_back(self.names.level_of(message.subject))

    async def finish(self, grace: float) -> bool:
        """Let running tasks finish within `grace` seconds; hand back the rest.
        True when cancelled while waiting (the stop is finished all the same)."""
        interrupted = False
        running = [entry.task for entry in self._running.values() if entry.task]
        if running:
            logger.info(
                "worker %s stopping: waiting up to %.1fs for %d running tasks",
                self.worker_name,
                grace,
                len(running),
            )
            try:
                await asyncio.wait(running, timeout=grace)
            except asyncio.CancelledError:
                interrupted = True  # no more grace, but hand the tasks back first
            unfinished = {task for task in running if not task.done()}
            if unfinished:
                logger.warning(
                    "worker %s: %d tasks did not finish within the grace; handing them back",
                    self.worker_name,
                    len(unfinished),
                )
                self._shutting_down = True
                await cancel_until_done(unfinished)
        self._threads.shutdown(wait=False, cancel_futures=True)
        return interrupted

    # -- the run loop --------------------------------------------------------------

    def deliver(self, message: Msg) -> None:
        if self._starting and self._free_slots and not self._mailbox:
            # Nothing waits ahead of it: start it now rather than a loop turn later
            # (the run loop's wake-up was a measurable part of add → start).
            self._start(message)
            return
        self._mailbox.append(message)
        self._wake.set()

    async def run(self) -> None:
        self._context = contextvars.copy_context()
        self._starting = True
        try:
            while True:
                while not (self._mailbox and self._free_slots):
                    self._wake.clear()
                    await self._wake.wait()
                self._start(self._mailbox.pop())
        finally:
            self._starting = False

    def _start(self, message: Msg) -> None:
        self._free_slots -= 1
        entry = Running(message)
        self._running[id(entry)] = entry
        entry.task = asyncio.create_task(self._process(entry), context=self._context.copy())
        # Freed by a callback, not in `_process`: a task cancelled before its
        # first step (a fence right after it was created) never runs its body,
        # so a `finally` there would leave the entry here forever, its lease
        # renewed so it is never redelivered, and its run slot taken. Out of
        # here, its unsettled message's lease lapses: redelivered.
        entry.task.add_done_callback(functools.partial(self._forget, entry))

    async def cancel_key(self, key: str, superseded_before: int | None = None) -> bool:
        """docket.cancel (None): cancel the running task with this key and drop its
        held copies; docket.replace (the new message's stream sequence): drop only
        held copies older than the replacement, leaving a running task alone.

        A held (prefetched, not started) message was purged from the stream by the
        cancel/replace, but this worker already has it: without this it would run.
        """
        # Take them all out before the first await, so that nothing starts them.
        void = self._mailbox.take_where(
            lambda message: (
                Names.key_of(message.subject) == key
                and (
                    superseded_before is None
                    or message.metadata.sequence.stream < superseded_before
                )
            )
        )
        for message in void:
            self.slots.give_back(self.names.level_of(message.subject))
        for message in void:
            await _quietly(message.ack())  # already purged: the ack only settles it
        found = bool(void)
        if superseded_before is not None:
            return found
        for entry in list(self._running.values()):
            if entry.execution is not None and entry.execution.key == key and entry.task:
                entry.task.cancel(f"cancelled by docket.cancel({key!r})")
                found = True
        return found

    def running_tasks(self) -> list[tuple[str, str]]:
        """(key, task name) of every run that has decoded its task."""
        return [
            (entry.execution.key, entry.execution.function_name)
            for entry in self._running.values()
            if entry.execution is not None
        ]

    async def fence(self, reason: str, grace: float) -> None:
        """Lost contact (worker/_fencing.py): cancel every run and drop every held
        message, settling none of them (the server redelivers them when their
        leases lapse). A run that has not ended within `grace` is reported."""
        dropped = len(self._mailbox)
        while self._mailbox:
            self.slots.give_back(self.names.level_of(self._mailbox.pop().subject))
        entries = [entry for entry in self._running.values() if entry.task is not None]
        logger.error(
            "worker %s fencing itself: %s; cancelling %d running tasks and dropping %d "
            "prefetched ones, for the server to redeliver",
            self.worker_name,
            reason,
            len(entries),
            dropped,
        )
        for entry in entries:
            assert entry.task is not None
            entry.fenced = True
            entry.task.cancel(f"fenced: {reason}")
        if entries:
            await asyncio.wait([entry.task for entry in entries if entry.task], timeout=grace)
        for entry in entries:
            assert entry.task is not None
            execution = entry.execution
            stuck = not entry.task.done()
            # A sync task's thread runs on whatever happens to the task awaiting it.
            threaded = (
                execution is not None
                and entry.began
                and not inspect.iscoroutinefunction(execution.function)
            )
            if execution is not None:
                metrics.count(
                    "docket_tasks_fenced", task_labels(self.docket.name, execution.function_name)
                )
            if stuck or threaded:
                name = execution.function_name if execution is not None else "?"
                logger.error(
                    "worker %s: task %r (%s) did not stop when fenced (%s); it may run "
                    "alongside its redelivered copy",
                    self.worker_name,
                    execution.key if execution is not None else Names.key_of(entry.message.subject),
                    name,
                    "a synchronous task's thread cannot be stopped"
                    if threaded and not stuck
                    else f"still running {grace:.3g}s after its cancellation",
                )
                metrics.count("docket_tasks_fence_refused", task_labels(self.docket.name, name))

    async def _process(self, entry: Running) -> None:
        message = entry.message
        try:
            execution = await self._prepare(message)
            if execution is None:
                return
            entry.execution = execution
            current_priority.set(execution.priority)  # this run's own task: its context
            await self._run(entry, execution)
            await message.ack()
        except asyncio.CancelledError:
            if entry.fenced:  # its lease is the server's to let lapse: settle nothing
                if entry.execution is not None:
                    log_outcome(entry.execution, "fenced", time.monotonic() - entry.started)
                raise
            # docket.cancel() ends a task for good (ack); a shutdown hands it back
            # (nak) so that another worker runs it at once.
            if self._shutting_down or entry.execution is None:
                await _quietly(message.nak())
                raise
            log_outcome(entry.execution, "cancelled", time.monotonic() - entry.started)
            await self.recorder.cancelled(entry.execution, began=entry.began)
            cancelled = ExecutionState.CANCELLED
            await self._report_to_group(entry.execution, cancelled, error="cancelled")
            await message.ack()
        except Exception:
            logger.exception("internal error while handling a task; handing it back")
            await _quietly(message.nak(delay=RETRY_INTERNAL_ERROR_AFTER))

    def _forget(self, entry: Running, _: asyncio.Task[None]) -> None:
        """A run has ended, however (its task's done callback): free its place."""
        del self._running[id(entry)]
        self._free_slots += 1
        self._wake.set()
        self.slots.give_back(self.names.level_of(entry.message.subject))

    async def _prepare(self, message: Msg) -> Execution | None:
        """Decode and resolve; park what can never run; None when nothing runs."""
        key = Names.key_of(message.subject)
        delivered = message.metadata.num_delivered
        try:
            envelope = decode_envelope(message.data)
        except UndecodableMessage as error:
            await self.park(message, key, None, str(error))
            return None
        if delivered > self.settings.max_deliveries:
            await self.park(
                message,
                key,
                envelope.function,
                f"delivered {delivered} times without finishing (the limit is "
                f"{self.settings.max_deliveries}): its workers died or were stopped each time",
            )
            return None
        try:
            execution = from_envelope(
                self.docket, envelope, message, fallback_task=self.settings.fallback_task
            )
            _check_binding(execution.function, execution.args, execution.kwargs)
        except UnknownTask:
            await self.park(
                message,
                key,
                envelope.function,
                f"unknown task {envelope.function!r}: no worker function is registered "
                "under that name",
            )
            return None
        except ArgumentError as error:
            await self.park(message, key, envelope.function, str(error))
            return None
        then = then_of(message.headers)
        if then is not None and envelope.attempt == 1:
            store = await group_store(self.docket)
            group, index = then
            if not await claim_then(store, group, index, message.metadata.sequence.stream):
                logger.warning("group %r: its callback already ran; dropping a copy", group)
                await message.ack()
                return None
        return execution

    async def _run(self, entry: Running, execution: Execution) -> None:
        early = (execution.when - datetime.now(UTC)).total_seconds()
        if early > 0:
            # Delivered before its time (clock skew between hosts): hold it.
            await asyncio.sleep(early)
        if self.docket.strike_list.is_struck(execution):
            log_outcome(execution, "struck")
            metrics.count(
                "docket_tasks_stricken", task_labels(self.docket.name, execution.function_name)
            )
            await self._report_to_group(execution, ExecutionState.CANCELLED, error="struck")
            return
        if execution.key in self.settings.counted_keys:
            self._started[execution.key] += 1
        entry.began = True
        await self.recorder.started(execution)
        log_start(execution, self.worker_name)
        outcome, handled = await telemetry.executing(self.docket, execution, self._call(execution))
        if isinstance(outcome.exception, AdmissionBlocked):
            self.recorder.refused(execution)
            if await settle_blocked(outcome.exception, self.recorder):
                dropped = f"dropped by {outcome.exception.reason}"
                await self._report_to_group(execution, ExecutionState.CANCELLED, error=dropped)
            return
        await self.recorder.finished(execution, outcome, handled)
        if handled:  # a Retry / Perpetual took the outcome over and logged it
            return
        log_finish(execution, outcome, self.worker_name)
        if outcome.exception is None:
            await self._report_to_group(execution, ExecutionState.COMPLETED, outcome.result)
        else:
            error = f"{type(outcome.exception).__name__}: {outcome.exception}"
            await self._report_to_group(execution, ExecutionState.FAILED, error=error)

    async def _report_to_group(
        self,
        execution: Execution,
        state: ExecutionState,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """A group member's final end, recorded before its message is acked (a
        crash before that redelivers it, and it is counted once all the same)."""
        if execution.message is not None:
            await self._report_message(execution.message, execution.key, state, result, error)

    async def _report_message(
        self,
        message: Msg,
        key: str,
        state: ExecutionState,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        member = membership(message.headers)
        if member is None:
            return
        group, index = member
        outcome = MemberOutcome(key=key, state=state, result=result, error=error)
        await report_member(await group_store(self.docket), group, index, outcome)

    async def _call(self, execution: Execution) -> tuple[TaskOutcome, bool]:
        """Run the task with its dependencies and outcome hooks (dependencies/_running.py).

        The task's own failure is in the outcome; what raises here is a hook
        that could not do its job (a reschedule not published): the message is
        then handed back rather than acked.
        """
        settings = self.settings
        return await run_task(execution, self._threads, settings.dependencies, settings.shared)

    async def park(self, message: Msg, key: str, function: str | None, reason: str) -> None:
        """Move a message that can never run to the dead-letter stream, then ack it."""
        logger.error("parking task %r as a dead letter: %s", key, reason)
        letter = DeadLetter(
            key=key,
            reason=reason,
            function=function,
            parked_at=datetime.now(UTC),
            worker=self.worker_name,
            data=bytes(message.data),
        )
        await self.docket.connection.js.publish(self.names.dead(key), encode_envelope(letter))
        # A group member that can never run has ended, as far as its group goes.
        await self._report_message(message, key, ExecutionState.FAILED, error=reason)
        await message.ack()


def _check_binding(function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse arguments that can never bind: a required parameter missing, or
    one given twice. Parameters a dependency supplies need no argument."""
    supplied = plan_for(function).parameters
    parameters = task_signature(function).signature.parameters  # cached
    for index, parameter in enumerate(parameters.values()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        positional = parameter.kind is not parameter.KEYWORD_ONLY and index < len(args)
        if positional and parameter.name in kwargs:
            raise ArgumentError(
                f"{function.__name__}() got multiple values for argument {parameter.name!r}"
            )
        if (
            not positional
            and parameter.name not in kwargs
            and parameter.name not in supplied
            and parameter.default is parameter.empty
        ):
            raise ArgumentError(
                f"{function.__name__}() is missing the required argument {parameter.name!r}"
            )


async def hand_back(message: Msg) -> None:
    """Nak a message for immediate redelivery elsewhere, whatever the connection's state."""
    await _quietly(message.nak())


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as error:
        logger.warning("could not hand a message back: %s", error)
