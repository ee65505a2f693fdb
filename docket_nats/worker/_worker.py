"""Worker: runs a docket's tasks (docket's API), as a set of supervised actors.

    puller ──messages──▶ executor ──tasks──▶ ack / dead letter
    lease keeper (in-progress for held messages) · cancel listener

The worker shares its Docket's NATS connection. All workers of a docket bind the
same durable pull consumer, so each task goes to exactly one of them at a time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from nats.aio.msg import Msg
from nats.js import api

from .. import _settings as settings
from .._subjects import LEVELS, encode_key, kv_stream, kv_subject
from .._types import TaskInvocation
from .._worker_registry import Heartbeat, heartbeat_bucket
from ..dependencies._base import (
    Dependency,
    Provider,
    WorkerContext,
    current_docket,
    current_worker_context,
)
from ..dependencies._shared import WorkerShared
from ..docket import Docket
from ..execution import TaskFunction
from . import _automatic as automatic
from ._actors import Supervisor
from ._automatic import AutomaticTasks
from ._cancellations import CancelListener
from ._contact import Contact
from ._early_hold import EarlyHold
from ._executor import MAX_DELIVERIES, Executor, RunSettings, hand_back
from ._fencing import Fence
from ._heartbeat import HeartbeatSender
from ._leases import LeaseKeeper, announce_ack_wait
from ._lifecycle import worker_lifecycles
from ._lifeline import Lifeline
from ._loop_watch import LoopWatch
from ._puller import Puller
from ._slots import Slots

logger = logging.getLogger("docket_nats.worker")

# Upper bound on messages delivered and not yet acked, across all workers.
MAX_ACK_PENDING = 100_000
# docket's default for its Redis read batch: kept and checked as docket checks
# it (at least 1); NATS delivers as slots free, so it has no effect here.
MESSAGE_BATCH = 1000
# While stopping, a request the server does not answer (it is gone) gives up
# after this long rather than holding up the stop.
STOP_REQUEST_TIMEOUT = 2.0

current_worker: ContextVar[Worker] = ContextVar("current_worker")


class _CurrentWorker(Provider["Worker"]):
    async def __aenter__(self) -> Worker:
        return current_worker.get()


def CurrentWorker() -> Worker:
    """The Worker running the task: `worker: Worker = CurrentWorker()`."""
    return cast("Worker", _CurrentWorker())


class Worker:
    """Runs tasks from a docket.

    Args:
        docket: The docket whose tasks to run (its connection is shared).
        name: This worker's name (default: host#pid).
        concurrency: Tasks run at once.
        redelivery_timeout: How long a task of a worker that died waits before
            another worker runs it. A live worker's tasks are never redelivered,
            however long they run.
        shutdown_grace: On stop, how long running tasks get to finish before
            they are cancelled and handed back to other workers.
        prefetch: Messages held beyond `concurrency`, ready to start the moment a
            slot frees (default: as many as `concurrency`). Their leases are
            renewed like running tasks'. Set 0 for long tasks where another idle
            worker should take the next task instead.
        fallback_task: Runs for task names this worker does not know; without
            one, such tasks are parked as dead letters.
        max_deliveries: A task delivered more often than this without finishing
            (its worker died or stopped each time) is parked as a dead letter
            instead of taking down one more worker.
        reconnection_delay, minimum_check_interval, scheduling_resolution,
        schedule_automatic_tasks, enable_internal_instrumentation: accepted for
            docket compatibility; NATS pushes work, so there is no polling to tune
            (`minimum_check_interval` paces `run_until_finished`'s emptiness check).
    """

    def __init__(
        self,
        docket: Docket,
        name: str | None = None,
        concurrency: int = 10,
        redelivery_timeout: timedelta = timedelta(minutes=5),
        reconnection_delay: timedelta = timedelta(seconds=5),
        minimum_check_interval: timedelta = timedelta(milliseconds=250),
        scheduling_resolution: timedelta = timedelta(milliseconds=250),
        schedule_automatic_tasks: bool = True,
        enable_internal_instrumentation: bool = False,
        fallback_task: TaskFunction | None = None,
        dependencies: Mapping[str, Any] | Iterable[Any] | None = None,
        message_batch: int = MESSAGE_BATCH,
        *,
        shutdown_grace: timedelta = timedelta(seconds=30),
        prefetch: int | None = None,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self.prefetch = settings.worker_settings(
            concurrency=concurrency,
            redelivery_timeout=redelivery_timeout,
            shutdown_grace=shutdown_grace,
            intervals={
                "reconnection_delay": reconnection_delay,
                "minimum_check_interval": minimum_check_interval,
                "scheduling_resolution": scheduling_resolution,
            },
            message_batch=message_batch,
            max_deliveries=max_deliveries,
            prefetch=prefetch,
        )
        self.docket = docket
        self.name = name or f"{socket.gethostname()}#{os.getpid()}"
        # What the runs' dependencies and log lines may know of this worker.
        self.context = WorkerContext(self.name, redelivery_timeout)
        self.concurrency = concurrency
        self.redelivery_timeout = redelivery_timeout
        self.reconnection_delay = reconnection_delay
        self.minimum_check_interval = minimum_check_interval
        self.scheduling_resolution = scheduling_resolution
        self.schedule_automatic_tasks = schedule_automatic_tasks
        self.enable_internal_instrumentation = enable_internal_instrumentation
        self.fallback_task = fallback_task
        self.dependencies = _named_dependencies(dependencies)
        # What Shared(...) dependencies made, kept until this worker stops.
        self.shared_values = WorkerShared()
        # The worker_lifecycle hooks of its dependency classes, entered while it runs.
        self._lifecycles: AsyncExitStack | None = None
        self.message_batch = message_batch
        self.shutdown_grace = shutdown_grace
        self.max_deliveries = max_deliveries
        # The puller asks for running + prefetched messages: with a few tasks
        # already delivered when a slot frees up, a short task never waits for a
        # round trip to the server.
        self.slots = Slots(concurrency + self.prefetch)
        self._supervisor = Supervisor(f"worker {self.name}")
        self._stopping = asyncio.Event()
        self._counted_keys: frozenset[str] = frozenset()  # run_at_most's
        self._puller: Puller | None = None
        self._executor: Executor | None = None
        self._early_hold: EarlyHold | None = None
        # Unsubscribes the puller from the connection's reconnect and disconnect events.
        self._forget_connection_events: Callable[[], None] | None = None
        self._started_at = datetime.now(UTC)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.shared_values = WorkerShared()  # a worker entered again makes them anew
        await self.shared_values.open()
        await self._ensure_consumer()
        await heartbeat_bucket(self.docket.connection.js, self.docket.names, self.docket.replicas)
        self._started_at = datetime.now(UTC)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._stop_actors()
        finally:
            await self.shared_values.aclose()  # after the last task that could use them

    async def _consumer_ack_wait(self) -> float:
        """The shared consumer's ack wait now (the last worker to start set it)."""
        names = self.docket.names
        info = await self.docket.connection.js.consumer_info(names.stream, names.consumer)
        return info.config.ack_wait or self.redelivery_timeout.total_seconds()

    async def _ensure_consumer(self) -> None:
        names = self.docket.names
        ack_wait = self.redelivery_timeout.total_seconds()
        # Running workers renew by the new ack wait before it takes effect.
        await announce_ack_wait(self.docket.connection.nc, names.ack_wait_notice, ack_wait)
        # One consumer per priority level (NORMAL's keeps the name it had before
        # priorities, so a docket made by an older version carries on).
        for level in LEVELS:
            config = api.ConsumerConfig(
                name=names.level_consumer(level),
                durable_name=names.level_consumer(level),
                filter_subject=names.level_filter(level),
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=ack_wait,
                max_deliver=-1,
                max_ack_pending=MAX_ACK_PENDING,
                max_waiting=4096,
                num_replicas=self.docket.replicas,
            )
            await self.docket.connection.js.add_consumer(names.stream, config)  # pyright: ignore[reportUnknownMemberType]

    def _start_actors(self) -> None:
        if self._executor is not None:
            return
        self._stopping.clear()
        # The actors (and so every run) see this docket and worker as current;
        # set in a context of their own, not in the caller's.
        actors = contextvars.copy_context()
        actors.run(self._set_current)
        actors.run(self._wire_actors)

    def _set_current(self) -> None:
        current_docket.set(self.docket)
        current_worker.set(self)
        current_worker_context.set(self.context)

    def _wire_actors(self) -> None:
        executor, early_hold, puller = self._wire_intake()

        def held() -> list[Msg]:
            return [*executor.held(), *early_hold.held()]

        self._wire_leases(held, executor, puller)
        self._wire_listeners()

    def _wire_intake(self) -> tuple[Executor, EarlyHold, Puller]:
        """The path of a message: puller, early hold, executor (started), and the
        puller's connection events."""
        connection = self.docket.connection
        settings = RunSettings(
            worker_name=self.name,
            concurrency=self.concurrency,
            fallback_task=self.fallback_task,
            max_deliveries=self.max_deliveries,
            dependencies=self.dependencies,
            shared=self.shared_values,
            counted_keys=self._counted_keys,
        )
        executor = Executor(self.docket.context, settings, self.slots)
        early_hold = EarlyHold(self.docket.names, self.slots, release=executor.deliver)
        puller = Puller(
            connection.nc,
            self.docket.names,
            self.slots,
            deliver=early_hold.deliver,
            refuse=hand_back,
        )
        self._executor, self._early_hold, self._puller = executor, early_hold, puller
        forget_reconnect = connection.on_reconnect(puller.connection_reset)
        forget_disconnect = connection.on_disconnect(puller.connection_lost)

        def forget_connection_events() -> None:
            forget_reconnect()
            forget_disconnect()

        self._forget_connection_events = forget_connection_events
        self._supervisor.start(executor)
        self._supervisor.start(early_hold)
        self._supervisor.start(puller)
        return executor, early_hold, puller

    def _wire_leases(
        self, held: Callable[[], list[Msg]], executor: Executor, puller: Puller
    ) -> None:
        """What keeps the held messages' leases (the lease keeper, and the
        lifeline while the loop is blocked) and fences the worker when they may
        have lapsed."""
        connection, names = self.docket.connection, self.docket.names
        contact = Contact()
        lease_keeper = LeaseKeeper(
            held,
            self.redelivery_timeout.total_seconds(),
            self._consumer_ack_wait,
            (connection.nc, names.ack_wait_notice),
            (connection.nc, contact, names.contact_probe),
        )
        self._supervisor.start(lease_keeper)
        self._supervisor.start(
            Fence(contact, held, lambda: lease_keeper.ack_wait, self._fence, puller.resume)
        )
        lifeline = Lifeline(
            self.name, contact, lambda: lease_keeper.ack_wait, held, connection.standalone_options
        )
        self._supervisor.start(LoopWatch(self.docket.name, lifeline, executor.running_tasks))

    def _wire_listeners(self) -> None:
        """Cancel notices, automatic tasks and the heartbeat."""
        connection = self.docket.connection
        self._supervisor.start(CancelListener(connection.nc, self.docket.names, self._cancel))
        if self.schedule_automatic_tasks:
            self._supervisor.start(AutomaticTasks(self.docket, automatic.RESEED_INTERVAL))
        interval = self.docket.heartbeat_interval.total_seconds()
        self._supervisor.start(
            HeartbeatSender(
                connection.js,
                self.docket.names,
                self._heartbeat,
                interval,
                ttl=interval * self.docket.missed_heartbeats,
            )
        )

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(
            name=self.name,
            last_seen=datetime.now(UTC),
            started=self._started_at,
            concurrency=self.concurrency,
            running=self.slots.held,
            tasks=sorted(self.docket.tasks),
        )

    async def _fence(self, reason: str, grace: float) -> None:
        """Lost contact (worker/_fencing.py): take no work, stop every run, drop
        every held message (unsettled: the server redelivers them)."""
        assert self._executor is not None and self._early_hold is not None
        assert self._puller is not None
        self._puller.pause()
        self._early_hold.take_all()
        await self._executor.fence(reason, grace)

    async def _cancel(self, key: str, superseded_before: int | None) -> bool:
        """A cancel or replace notice: void held copies, cancel a running task."""
        assert self._executor is not None and self._early_hold is not None
        void = self._early_hold.void(key, superseded_before)
        for message in void:  # purged from the stream already: the ack only settles it
            try:
                await message.ack()
            except Exception as error:  # connection closed: nothing left to settle
                logger.debug("could not settle a void message: %s", error)
        return await self._executor.cancel_key(key, superseded_before) or bool(void)

    async def _enter_lifecycles(self) -> None:
        """Enter the dependency classes' worker_lifecycle hooks, once per run_*."""
        if self._lifecycles is None:
            stack = AsyncExitStack()
            await stack.enter_async_context(worker_lifecycles(self.docket, self, self.dependencies))
            self._lifecycles = stack

    async def _stop_actors(self) -> None:
        try:
            await self._halt_actors()
        finally:
            lifecycles, self._lifecycles = self._lifecycles, None
            if lifecycles is not None:
                await lifecycles.aclose()

    async def _halt_actors(self) -> None:
        """Stop pulling, let running tasks finish within the grace, hand back the rest."""
        executor, puller, early_hold = self._executor, self._puller, self._early_hold
        if executor is None or puller is None or early_hold is None:
            return
        puller.stop_pulling()
        # No new starts while the running tasks finish: a prefetched message that
        # started during the grace would outlive the worker.
        await self._supervisor.stop(executor.name)
        await executor.drain()
        await self._supervisor.stop(early_hold.name)
        for message in early_hold.take_all():  # held, so no slot to give back
            await hand_back(message)
        interrupted = await executor.finish(self.shutdown_grace.total_seconds())
        await self._supervisor.stop()  # the lease keeper renewed the running ones until now
        await self._forget_heartbeat()
        if self._forget_connection_events is not None:
            self._forget_connection_events()
        self._executor = self._puller = self._early_hold = None
        # A fresh count for a later run_*: nothing is held any more.
        self.slots = Slots(self.slots.capacity)
        if interrupted:
            raise asyncio.CancelledError

    async def _forget_heartbeat(self) -> None:
        """A worker that stops cleanly leaves the live list at once, not after its TTL."""
        if not self.docket.connection.nc.is_connected:
            return  # no server to tell: the entry expires with its TTL
        try:
            # A stream purge leaves no tombstone behind (a KV delete would, per worker).
            bucket = self.docket.names.bucket("workers")
            async with asyncio.timeout(STOP_REQUEST_TIMEOUT):
                await self.docket.connection.js.purge_stream(
                    kv_stream(bucket), subject=kv_subject(bucket, encode_key(self.name))
                )
        except Exception as error:  # the server may be gone; the TTL cleans up
            logger.debug("could not remove heartbeat: %s", error)

    def stop(self) -> None:
        """Ask a running `run_*` to return (graceful; safe from a signal handler)."""
        self._stopping.set()

    # -- running ---------------------------------------------------------------

    async def run_forever(self) -> None:
        """Run tasks until `stop()` (or cancellation)."""
        await self._enter_lifecycles()
        self._start_actors()
        try:
            await self._stopping.wait()
        finally:
            await self._stop_actors()

    async def run_until_finished(self) -> None:
        """Run until nothing is scheduled, queued or running on the docket."""
        await self._enter_lifecycles()
        self._start_actors()
        cancelled_before = _cancelling()
        try:
            while not self._stopping.is_set():
                if await self._finished():
                    return
                if _cancelling() > cancelled_before:
                    # Python 3.11's asyncio.wait_for (in nats-py's request) can
                    # swallow a cancellation that races with the reply; without
                    # this the run would go on forever (seen in the fault tests).
                    raise asyncio.CancelledError
                try:
                    async with asyncio.timeout(self.minimum_check_interval.total_seconds()):
                        await self._stopping.wait()
                except TimeoutError:
                    pass
        finally:
            await self._stop_actors()

    async def run_at_most(self, iterations_by_key: Mapping[str, int]) -> None:
        """`run_until_finished`, running each of these keys at most so many times."""
        self._counted_keys = frozenset(iterations_by_key)

        def reached(execution: TaskInvocation) -> bool:
            limit = iterations_by_key.get(execution.key)
            executor = self._executor
            return (
                limit is not None
                and executor is not None
                and executor.runs_started(execution.key) >= limit
            )

        self.docket.strike_list.add_condition(reached)
        try:
            await self.run_until_finished()
        finally:
            self.docket.strike_list.remove_condition(reached)
            self._counted_keys = frozenset()

    async def _finished(self) -> bool:
        """Nothing held here and nothing in the stream, read twice around an idle
        check: a running task can empty the stream for a moment (a replace purges
        its own message before it publishes the next), and a task may start or
        end while an answer is on its way."""
        return (
            self._idle()
            and await self._docket_is_empty()
            and self._idle()
            and await self._docket_is_empty()
        )

    def _idle(self) -> bool:
        """Holding no message: none running, prefetched or held until due."""
        early_hold = self._early_hold
        return self.slots.held == 0 and (early_hold is None or not early_hold.held())

    async def _docket_is_empty(self) -> bool:
        try:
            info = await self.docket.connection.js.stream_info(self.docket.names.stream)
        except Exception as error:  # disconnected: not known to be empty; ask again
            logger.debug("could not read the work stream: %s", error)
            return False
        return info.state.messages == 0


def _cancelling() -> int:
    """Cancellation requests pending on the current task (swallowed ones included)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _named_dependencies(
    dependencies: Mapping[str, Any] | Iterable[Any] | None,
) -> dict[str, Dependency[Any]]:
    """Worker-level dependencies by name: docket takes a mapping (named) or a list.

    Checked here, as docket does, so a mistake fails `Worker(...)` rather than
    every run: each must be a Dependency, and names starting with "__" are kept
    for the unnamed ones of a list.
    """
    if not dependencies:
        return {}
    if isinstance(dependencies, Mapping):
        named = list(cast(Mapping[str, Any], dependencies).items())
        for name, _ in named:
            if name.startswith("__"):
                raise ValueError(
                    f"Worker dependency name {name!r} is reserved: names starting with "
                    "'__' are not allowed"
                )
    else:
        named = [(f"__worker_dep_{index}__", value) for index, value in enumerate(dependencies)]
    for index, (name, dependency) in enumerate(named):
        if not isinstance(dependency, Dependency):
            label = f"index {index}" if name.startswith("__") else name
            raise TypeError(
                f"Worker dependency {label!r} must be a Dependency instance (e.g. "
                f"Depends(fn) or Retry(...)), got {type(dependency).__name__}"
            )
    return {name: cast(Dependency[Any], dependency) for name, dependency in named}
