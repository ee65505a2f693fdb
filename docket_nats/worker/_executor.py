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
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from .. import _telemetry as telemetry
from .._metrics import registry as metrics
from .._metrics import task_labels
from .._run_log import log_finish, log_outcome, log_start
from .._state_store import StateRecorder
from .._subjects import Names
from .._wire import (
    ArgumentError,
    DeadLetter,
    TaskEnvelope,
    UndecodableMessage,
    decode_envelope,
    encode_envelope,
    task_signature,
)
from ..dependencies._base import TaskOutcome
from ..dependencies._plans import plan_for
from ..dependencies._running import run_task
from ..execution import Execution, TaskFunction
from ._actors import Actor
from ._slots import Slots

if TYPE_CHECKING:
    from ..docket import Docket
    from ._worker import Worker

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


class Executor(Actor):
    name = "executor"

    def __init__(
        self,
        docket: Docket,
        worker_name: str,
        slots: Slots,
        concurrency: int,
        fallback_task: TaskFunction | None,
        on_started: Callable[[Execution], None],
    ) -> None:
        self.docket = docket
        self.names: Names = docket.names
        self.worker_name = worker_name
        self.slots = slots
        self.fallback_task = fallback_task
        self.on_started = on_started
        self.recorder = StateRecorder(docket, worker_name)  # execution state and results
        # The Worker tasks see as CurrentWorker() (and whose dependencies= wrap
        # every run); set by the Worker that starts this executor.
        self.worker: Worker | None = None
        # Deliveries a message may have before it is parked instead of run.
        self.max_deliveries = MAX_DELIVERIES
        # Delivered messages wait here (prefetched) until one of `concurrency`
        # run slots is free; a deque so the lease keeper can renew them too.
        self.mailbox: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._run_slots = asyncio.Semaphore(concurrency)
        # Set on shutdown: a cancelled task is then handed back, not acked.
        self.shutting_down = False
        self.running: dict[int, Running] = {}
        self.threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"docket-{worker_name}"
        )

    def deliver(self, message: Msg) -> None:
        self.mailbox.append(message)
        self._arrived.set()

    async def run(self) -> None:
        while True:
            while not self.mailbox:
                self._arrived.clear()
                await self._arrived.wait()
            await self._run_slots.acquire()
            if not self.mailbox:  # handed back by a stop while we waited for a slot
                self._run_slots.release()
                continue
            message = self.mailbox.popleft()
            entry = Running(message)
            self.running[id(entry)] = entry
            entry.task = asyncio.create_task(self._process(entry))

    async def cancel_key(self, key: str, superseded_before: int | None = None) -> bool:
        """docket.cancel (None): cancel the running task with this key and drop its
        held copies; docket.replace (the new message's stream sequence): drop only
        held copies older than the replacement, leaving a running task alone.

        A held (prefetched, not started) message was purged from the stream by the
        cancel/replace, but this worker already has it: without this it would run.
        """
        void = [
            message
            for message in self.mailbox
            if Names.key_of(message.subject) == key
            and (superseded_before is None or message.metadata.sequence.stream < superseded_before)
        ]
        # Take them all out before the first await, so that nothing starts them.
        for message in void:
            self.mailbox.remove(message)
            self.slots.give_back()
        for message in void:
            await _quietly(message.ack())  # already purged: the ack only settles it
        found = bool(void)
        if superseded_before is not None:
            return found
        for entry in list(self.running.values()):
            if entry.execution is not None and entry.execution.key == key and entry.task:
                entry.task.cancel(f"cancelled by docket.cancel({key!r})")
                found = True
        return found

    async def _process(self, entry: Running) -> None:
        message = entry.message
        try:
            execution = await self._prepare(message)
            if execution is None:
                return
            entry.execution = execution
            await self._run(entry, execution)
            await message.ack()
        except asyncio.CancelledError:
            # docket.cancel() ends a task for good (ack); a shutdown hands it back
            # (nak) so that another worker runs it at once.
            if self.shutting_down or entry.execution is None:
                await _quietly(message.nak())
                raise
            log_outcome(entry.execution, "cancelled", time.monotonic() - entry.started)
            await self.recorder.cancelled(entry.execution, began=entry.began)
            await message.ack()
        except Exception:
            logger.exception("internal error while handling a task; handing it back")
            await _quietly(message.nak(delay=RETRY_INTERNAL_ERROR_AFTER))
        finally:
            del self.running[id(entry)]
            self._run_slots.release()
            self.slots.give_back()

    async def _prepare(self, message: Msg) -> Execution | None:
        """Decode and resolve; park what can never run; None when nothing runs."""
        key = Names.key_of(message.subject)
        delivered = message.metadata.num_delivered
        try:
            envelope = decode_envelope(message.data)
        except UndecodableMessage as error:
            await self.park(message, key, None, str(error))
            return None
        if delivered > self.max_deliveries:
            await self.park(
                message,
                key,
                envelope.function,
                f"delivered {delivered} times without finishing (the limit is "
                f"{self.max_deliveries}): its workers died or were stopped each time",
            )
            return None
        function = self.docket.tasks.get(envelope.function) or self.fallback_task
        if function is None:
            await self.park(
                message,
                key,
                envelope.function,
                f"unknown task {envelope.function!r}: no worker function is registered "
                "under that name",
            )
            return None
        try:
            args, kwargs = task_signature(function).decode(envelope, self.docket.allow_pickle)
            _check_binding(function, args, kwargs)
        except ArgumentError as error:
            await self.park(message, key, envelope.function, str(error))
            return None
        return self._execution(envelope, function, args, kwargs, message)

    def _execution(
        self,
        envelope: TaskEnvelope,
        function: TaskFunction,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        message: Msg,
    ) -> Execution:
        return Execution(
            self.docket,
            function,
            args,
            kwargs,
            envelope.key,
            envelope.when,
            envelope.attempt,
            function_name=envelope.function,
            message=message,
        )

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
            return
        self.on_started(execution)
        entry.began = True
        await self.recorder.started(execution)
        log_start(execution, self.worker_name)
        outcome, handled = await telemetry.executing(self.docket, execution, self._call(execution))
        await self.recorder.finished(execution, outcome, handled)
        if handled:  # a Retry / Perpetual took the outcome over and logged it
            return
        log_finish(execution, outcome, self.worker_name)

    async def _call(self, execution: Execution) -> tuple[TaskOutcome, bool]:
        """Run the task with its dependencies and outcome hooks (see dependencies.running).

        The task's own failure is in the outcome; what raises here is a hook
        that could not do its job (a reschedule not published): the message is
        then handed back rather than acked.
        """
        return await run_task(execution, self.worker, self._invoke)

    async def _invoke(
        self, function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if inspect.iscoroutinefunction(function):
            return await function(*args, **kwargs)
        # Sync tasks run in the worker's threads, with this run's context variables.
        context = contextvars.copy_context()
        result = await asyncio.get_running_loop().run_in_executor(
            self.threads, partial(context.run, function, *args, **kwargs)
        )
        if inspect.isawaitable(result):
            return await result
        return result

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
        await message.ack()

    def shutdown_threads(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


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


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as error:
        logger.warning("could not hand a message back: %s", error)
