"""Docket: add, replace and cancel tasks; register task functions.

Every add is one JetStream publish. The server enforces idempotent keys: the
publish expects no message on `docket.N.*.<key>` (neither scheduled nor queued nor
running-until-acked), so a duplicate key is refused atomically (error 10071) and
reported as `Disposition.ALREADY_SCHEDULED`. Future tasks carry a NATS message
schedule that moves them onto the run subject when due.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, overload

from nats.js.errors import APIError
from uncalled_for import validate_dependencies

from . import _settings as settings
from . import _telemetry as telemetry
from ._connection import Connection, DeadLetterLimits, DocketURL
from ._context import DocketContext
from ._dead_letters import list_dead_letters, purge_dead_letters, read_dead_letter
from ._groups import (
    OUTCOMES_PARAMETER,
    Group,
    GroupState,
    GroupStore,
    MemberOutcome,
    ThenTask,
    encode_keys,
    encode_state,
    group_store,
    member_headers,
    members_key,
    new_bitmap,
    publish_then,
    report_member,
    state_key,
)
from ._keys import new_key
from ._metrics import docket_labels, task_labels
from ._metrics import registry as metrics
from ._priority import Priority
from ._queue_bound import QueueBound, QueueLimits
from ._snapshot import DocketSnapshot, clear, take_snapshot
from ._state_records import ensure_bucket as ensure_execution_bucket
from ._state_records import queued_or_scheduled, read_record, record_cancelled
from ._strike_list import StrikeList
from ._strike_rules import LiteralOperator, Operator
from ._subjects import (
    NORMAL_LEVEL,
    WRONG_LAST_SEQUENCE,
    Names,
)
from ._types import ExecutionState
from ._wire import DeadLetter, decode_envelope, task_signature
from ._work_stream import encode, new_task_headers, placement
from ._worker_registry import WorkerInfo, list_workers
from .execution import (
    Disposition,
    Execution,
    TaskCall,
    TaskFunction,
    from_envelope,
    load_execution,
)

logger = logging.getLogger("docket_nats.docket")

# The built-in tasks (trace, fail, sleep) every Docket registers, as docket's do.
# They ask for CurrentDocket() and CurrentWorker(), so they sit above this module;
# the package fills this list when it is imported (docket_nats/__init__.py).
STANDARD_TASKS: list[TaskFunction] = []

P = ParamSpec("P")
R = TypeVar("R")


def aware(when: datetime) -> datetime:
    """Naive datetimes are local time, as Python's own conversions take them."""
    return when if when.tzinfo is not None else when.astimezone()


class Docket:
    """A named collection of tasks on NATS JetStream (docket's API).

    Args:
        name: The docket's name; it names its streams, subjects and buckets.
        url: None (default) for the embedded local server, `memory://NAME` for an
            ephemeral one, or `nats://host:port` (comma-separated or a list for a
            cluster) for a real deployment. Credentials may be in the URL.
        heartbeat_interval: How often workers report that they are alive.
        missed_heartbeats: Heartbeats a worker may miss before it counts as gone.
        execution_ttl: How long finished executions' records are kept.
        replicas: JetStream replicas of the docket's streams and buckets (1 or 3).
        allow_pickle: Pickle arguments msgspec cannot encode. Trusted systems only:
            unpickling runs code. Workers must opt in too.
        connect_options: Passed to `nats.connect` (user, password, token, tls,
            user_credentials, nkeys_seed, ...).
        max_dead_letters, max_dead_letter_bytes: Bounds of the dead-letter stream
            (default 100,000 letters and 7 days; bytes unbounded unless given, as
            JetStream reserves a byte bound up front); when one is reached the
            oldest dead letter is dropped, never a task.
        max_queued_tasks, max_queued_bytes: The work stream's admission limit
            (scheduled and queued tasks, running ones until acked; default
            10,000,000 tasks and 8 GiB): `add()` raises `QueueFull`, naming the
            limit, when the stream is at it. Counted by each producer from the
            stream's size read at most every 250 ms plus its own adds since.
    """

    def __init__(
        self,
        name: str = "docket",
        url: DocketURL = None,
        heartbeat_interval: timedelta = timedelta(seconds=2),
        missed_heartbeats: int = 5,
        execution_ttl: timedelta = timedelta(minutes=15),
        enable_internal_instrumentation: bool = False,
        *,
        replicas: int = 1,
        allow_pickle: bool = False,
        connect_options: Mapping[str, Any] | None = None,
        max_dead_letters: int = DeadLetterLimits.max_dead_letters,
        max_dead_letter_bytes: int | None = DeadLetterLimits.max_dead_letter_bytes,
        max_queued_tasks: int = QueueLimits.max_queued_tasks,
        max_queued_bytes: int = QueueLimits.max_queued_bytes,
    ) -> None:
        self.names = Names(name)  # a name NATS cannot take fails here
        settings.nats_url(url)
        settings.positive_duration("heartbeat_interval", heartbeat_interval)
        settings.at_least_one("missed_heartbeats", missed_heartbeats)
        settings.non_negative_duration("execution_ttl", execution_ttl)  # 0: keep nothing
        settings.at_least_one("replicas", replicas)
        settings.at_least_one("max_queued_tasks", max_queued_tasks)
        settings.at_least_one("max_queued_bytes", max_queued_bytes)
        self.name = name
        self.url = url
        self.heartbeat_interval = heartbeat_interval
        self.missed_heartbeats = missed_heartbeats
        self.execution_ttl = execution_ttl
        self.enable_internal_instrumentation = enable_internal_instrumentation
        self.replicas = replicas
        self.allow_pickle = allow_pickle
        self.connection = Connection(url, dict(connect_options or {}))
        self.dead_letter_limits = DeadLetterLimits(max_dead_letters, max_dead_letter_bytes)
        self.queue_bound = QueueBound(
            self.connection, self.names.stream, QueueLimits(max_queued_tasks, max_queued_bytes)
        )
        self.strike_list = StrikeList(self.names, replicas)
        self.tasks: dict[str, TaskFunction] = {}
        # What the layers below need of this docket (state, results, executions).
        self.context = DocketContext(
            name=name,
            names=self.names,
            connection=self.connection,
            replicas=replicas,
            execution_ttl=execution_ttl,
            allow_pickle=allow_pickle,
            tasks=self.tasks,
            strike_list=self.strike_list,
        )

        for function in STANDARD_TASKS:
            self.register(function)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connection.open(client_name=f"docket-nats:{self.name}")
        try:
            await self.connection.ensure_streams(self.names, self.replicas, self.dead_letter_limits)
            await self.strike_list.start(self.connection.js, self.connection)
            await ensure_execution_bucket(self.context)
        except BaseException:
            await self.connection.close()
            raise
        await self.queue_bound.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.queue_bound.stop()
        await self.strike_list.stop()
        await self.connection.close()

    # -- registration ----------------------------------------------------------

    def register(self, function: TaskFunction, names: list[str] | None = None) -> None:
        """Make `function` runnable by workers of this process under its name(s)."""
        task_signature(function)  # fail early on a function we cannot inspect
        # As docket: two Retry (or Timeout and another Runtime) are refused here,
        # with its message ("Only one Retry dependency is allowed"), not on a worker.
        validate_dependencies(function)
        for task_name in names or [function.__name__]:
            self.tasks[task_name] = function

    def register_collection(self, collection_path: str) -> None:
        """Register every function of `module:attribute` (an iterable of functions)."""
        module_name, _, member_name = collection_path.rpartition(":")
        if not module_name or not member_name:
            raise ValueError(f"expected 'module:attribute', got {collection_path!r}")
        collection: Iterable[TaskFunction] = getattr(
            importlib.import_module(module_name), member_name
        )
        for function in collection:
            self.register(function)

    def labels(self) -> Mapping[str, str]:
        return {"docket.name": self.name}

    # -- scheduling ------------------------------------------------------------

    @overload
    def add(
        self,
        function: Callable[P, Awaitable[R]] | Callable[P, R],
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[P, Awaitable[Execution]]: ...

    @overload
    def add(
        self,
        function: str,
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[..., Awaitable[Execution]]: ...

    def add(
        self,
        function: TaskFunction | str,
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[..., Awaitable[Execution]]:
        """Schedule `function` now or at `when`; a live `key` is left as it is.

        `priority` (an extension) overrides the function's declared Priority."""
        resolved, function_name = self._resolve(function)
        return _Scheduler(
            self, resolved, function_name, when, key, replace=False, priority=priority
        )

    @overload
    def replace(
        self,
        function: Callable[P, Awaitable[R]] | Callable[P, R],
        when: datetime,
        key: str,
        *,
        priority: Priority | None = None,
    ) -> Callable[P, Awaitable[Execution]]: ...

    @overload
    def replace(
        self, function: str, when: datetime, key: str, *, priority: Priority | None = None
    ) -> Callable[..., Awaitable[Execution]]: ...

    def replace(
        self,
        function: TaskFunction | str,
        when: datetime,
        key: str,
        *,
        priority: Priority | None = None,
    ) -> Callable[..., Awaitable[Execution]]:
        """Schedule `function` under `key`, replacing whatever is scheduled or queued there."""
        resolved, function_name = self._resolve(function)
        return _Scheduler(self, resolved, function_name, when, key, replace=True, priority=priority)

    @overload
    def call(
        self,
        function: Callable[P, Awaitable[R]] | Callable[P, R],
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[P, TaskCall]: ...

    @overload
    def call(
        self,
        function: str,
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[..., TaskCall]: ...

    def call(
        self,
        function: TaskFunction | str,
        when: datetime | None = None,
        key: str | None = None,
        *,
        priority: Priority | None = None,
    ) -> Callable[..., TaskCall]:
        """Describe one task call, for `add_many` / `replace_many`."""
        resolved, function_name = self._resolve(function)

        def specifier(*args: Any, **kwargs: Any) -> TaskCall:
            return TaskCall(
                resolved,
                args,
                kwargs,
                key if key is not None else new_key(),
                aware(when) if when is not None else datetime.now(UTC),
                function_name,
                priority,
            )

        return specifier

    async def add_many(
        self, calls: Iterable[TaskCall], *, chunk_size: int | None = 1000
    ) -> list[Execution]:
        """Add many tasks, pipelined; each Execution reports its own disposition.

        `chunk_size` bounds how many publishes are in flight at once (None: all).
        """
        return await self._publish_many(calls, replace=False, chunk_size=chunk_size)

    async def replace_many(
        self, calls: Iterable[TaskCall], *, chunk_size: int | None = 1000
    ) -> list[Execution]:
        """Replace many tasks, pipelined (see `add_many`)."""
        return await self._publish_many(calls, replace=True, chunk_size=chunk_size)

    async def group(
        self,
        calls: Iterable[TaskCall],
        *,
        then: TaskCall | None = None,
        key: str | None = None,
        chunk_size: int | None = 1000,
    ) -> Group:
        """Add `calls` as one group (pipelined, like `add_many`), and `then` to run
        once after every member has ended (completed, failed after its retries, or
        cancelled), with the members' `MemberOutcome`s in member order as its
        keyword argument `outcomes`.

        A `key` already taken by a group is refused: the returned Group's
        disposition is ALREADY_SCHEDULED and nothing is added. See
        docs/architecture.md, "Groups", for what survives which crash.
        """
        [group] = await self._stages(
            [list(calls), [then] if then is not None else []], key, chunk_size
        )
        return group

    async def chain(
        self, *steps: TaskCall | Iterable[TaskCall], key: str | None = None
    ) -> list[Group]:
        """Run `steps` one after another: a step is a task call, or several (a group,
        run in parallel). Every step after the first receives the outcomes of the
        one before it as its keyword argument `outcomes` (`outcomes[0].result` is
        the previous task's result), and starts once all of that step has ended.

        Returns one Group per step (keys `<key>.1`, `<key>.2`, ...). A `key` already
        taken is refused: the first Group's disposition is ALREADY_SCHEDULED and
        nothing is added.
        """
        stages = [[step] if isinstance(step, TaskCall) else list(step) for step in steps]
        if not stages:
            raise ValueError("a chain needs at least one step")
        if len(stages) == 1:
            stages.append([])  # one step: a group with nothing after it
        return await self._stages(stages, key, chunk_size=1000, chained=True)

    async def _stages(
        self,
        stages: list[list[TaskCall]],
        key: str | None,
        chunk_size: int | None,
        chained: bool = False,
    ) -> list[Group]:
        """Groups for stages[:-1], each one's members the callback of the one
        before; the last stage is the last group's callback (or none)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        for stage in stages[1:]:
            for call in stage:
                if OUTCOMES_PARAMETER not in task_signature(call.function).signature.parameters:
                    raise TypeError(
                        f"the group callback {call.function.__name__}() needs a parameter "
                        f"{OUTCOMES_PARAMETER!r} (it receives the members' outcomes)"
                    )
        base = key if key is not None else new_key()
        count = len(stages) - 1
        keys = [f"{base}.{i + 1}" for i in range(count)] if chained else [base]
        executions = [[self._execution_of(call) for call in stage] for stage in stages]
        groups = [
            Group(
                self.context,
                keys[i],
                [member.key for member in executions[i]],
                Disposition.SCHEDULED,
                [task.key for task in executions[i + 1]],
            )
            for i in range(count)
        ]
        store = await group_store(self.context)
        # Last first: a stage's state exists before the one that completes into it.
        # The state record claims the key; the member list follows it.
        states: list[GroupState] = []
        for i in reversed(range(count)):
            total = len(executions[i])
            state = GroupState(
                total=total,
                done=new_bitmap(total),
                failed=new_bitmap(total),
                then=[
                    ThenTask(encode(task), task.key, task.when, task.priority.level)
                    for task in executions[i + 1]
                ],
                then_group=keys[i + 1] if i + 1 < count else None,
            )
            if await store.create(state_key(keys[i]), encode_state(state)) is None:
                for group in groups:
                    # The handles then speak for the groups already there.
                    group.disposition = Disposition.ALREADY_SCHEDULED
                    group.member_keys, group.then_keys = [], []
                return groups
            await store.create(members_key(keys[i]), encode_keys(groups[i].member_keys))
            states.insert(0, state)
        await self._publish_members(store, keys[0], executions[0], chunk_size)
        if not executions[0]:
            await publish_then(store, keys[0], states[0])
        return groups

    async def _publish_members(
        self,
        store: GroupStore,
        group_key: str,
        members: list[Execution],
        chunk_size: int | None,
    ) -> None:
        async def one(index: int, member: Execution) -> None:
            try:
                headers = member_headers(group_key, index)
                await self._publish(member, False, check_strikes=True, extra_headers=headers)
            except Exception as error:
                member.disposition = Disposition.FAILED
                member.schedule_exception = error
            if member.disposition is not Disposition.SCHEDULED:
                # It will never run in this group: it ends now, as far as the group goes.
                struck = member.disposition is Disposition.STRUCK
                outcome = MemberOutcome(
                    key=member.key,
                    state=ExecutionState.CANCELLED if struck else ExecutionState.FAILED,
                    error=f"not added: {member.disposition.value}",
                )
                await report_member(store, group_key, index, outcome)

        step = chunk_size or max(1, len(members))
        for start in range(0, len(members), step):
            await asyncio.gather(
                *(one(start + i, member) for i, member in enumerate(members[start : start + step]))
            )

    def _execution_of(self, call: TaskCall) -> Execution:
        return self._execution(
            call.function,
            call.function_name or call.function.__name__,
            call.args,
            call.kwargs,
            call.when,
            call.key,
            call.priority,
        )

    async def schedule(self, execution: Execution) -> None:
        """Add an Execution built elsewhere (docket's lower-level API): add() semantics."""
        await self._publish(execution, replace=False, check_strikes=True)

    async def cancel(self, key: str) -> None:
        """Remove a scheduled or queued task; ask the worker running it to stop.

        A key with nothing in the work stream (finished, or never added) keeps
        its record: cancelling a finished task changes nothing, as in docket.
        """
        purged = await self._purge(key)
        if purged:
            # Before the notice: the record the worker of a running task writes
            # when it stops (with its worker and times) then lands last.
            await record_cancelled(self.context, key)
        await self.connection.nc.publish(self.names.cancel(key), b"")
        metrics.count("docket_tasks_cancelled", docket_labels(self.name))

    # -- strikes (see _strike_list.py) -------------------------------------------------

    async def strike(
        self,
        function: TaskFunction | str | None = None,
        parameter: str | None = None,
        operator: Operator | LiteralOperator = "==",
        value: Any = None,
        **conditions: Any,
    ) -> None:
        """Refuse matching tasks at add() and on every worker, until restored.

        `function` (a task or its name; None: every task) with no parameter
        strikes the task; `parameter operator value` strikes the calls whose
        argument matches. Keywords add conditions to the same rule, which then
        strikes only when ALL hold: `strike(process_order, customer_id="12345",
        amount=(">", 1000))`. Raises ValueError for an unknown operator or a
        parameter the (registered) task does not have, before storing anything.
        """
        name, task = self._strike_target(function)
        await self.strike_list.strike(name, task, parameter, operator, value, conditions)

    async def restore(
        self,
        function: TaskFunction | str | None = None,
        parameter: str | None = None,
        operator: Operator | LiteralOperator = "==",
        value: Any = None,
        **conditions: Any,
    ) -> None:
        """Lift the strike made with the same arguments."""
        name, task = self._strike_target(function)
        await self.strike_list.restore(name, task, parameter, operator, value, conditions)

    async def wait_for_strikes_loaded(self) -> None:
        """docket's API; here the rules are loaded before `async with` enters."""

    def _strike_target(
        self, function: TaskFunction | str | None
    ) -> tuple[str | None, TaskFunction | None]:
        if function is None or isinstance(function, str):
            return function, self.tasks.get(function) if function else None
        return function.__name__, function

    # -- observability (see _state_store.py, _snapshot.py) ------------------------------

    async def get_execution(self, key: str) -> Execution | None:
        """The execution under `key` (scheduled, queued, running or recently
        finished), or None when nothing is known of it."""
        return await load_execution(self.context, key)

    async def snapshot(self, limit: int = 1000) -> DocketSnapshot:
        """Counts of future and running tasks, up to `limit` of each listed, and
        the live workers (see _snapshot.py)."""
        return await take_snapshot(self.context, limit)

    async def clear(self) -> int:
        """Remove every scheduled and queued task (running ones go on); returns how many."""
        return await clear(self.context)

    # -- workers ---------------------------------------------------------------

    async def workers(self) -> list[WorkerInfo]:
        """The workers alive now (their heartbeats have not expired)."""
        return await list_workers(self.connection.js, self.names, self.replicas)

    async def task_workers(self, task_name: str) -> list[WorkerInfo]:
        """The live workers that can run `task_name`."""
        return [worker for worker in await self.workers() if task_name in worker.tasks]

    # -- dead letters ----------------------------------------------------------

    async def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """What workers parked because it can never run, oldest first."""
        return await list_dead_letters(self.context, limit)

    async def retry_dead_letter(self, key: str) -> Execution:
        """Add the task parked under `key` again, with its original arguments, due
        now and as its first attempt (add() semantics: a strike or a key already
        taken refuses it, see `disposition`); the letter it read (and any older
        one of the key) is removed once the task is back on the work stream, a
        letter parked again meanwhile stays.

        Raises LookupError when no letter has that key, and UnknownTask,
        ArgumentError or UndecodableMessage when this process cannot rebuild the
        call (register the task first; bytes that never decoded stay parked).
        """
        letter = await read_dead_letter(self.context, key)
        if letter is None:
            raise LookupError(f"no dead letter with the key {key!r}")
        execution = await self._add_again(letter.data)
        if execution.disposition is Disposition.SCHEDULED:
            # Only the letter read (and older ones of the key): a worker that
            # still cannot run the task may have parked it again meanwhile.
            await purge_dead_letters(self.context, key, up_to_sequence=letter.sequence)
        return execution

    async def retry_failed(self, key: str) -> Execution:
        """Add the task whose run under `key` FAILED for good again, with its
        original arguments, due now and as its first attempt (add() semantics: a
        strike or a key already taken refuses it, see `disposition`).

        Raises LookupError when the key's latest record is not FAILED (unknown,
        expired after `execution_ttl`, or another state), ValueError when the
        record kept no call (too large, see `_state_records.CALL_LIMIT`), and
        UnknownTask, ArgumentError or UndecodableMessage when this process cannot
        rebuild the call (register the task first).
        """
        record = await read_record(self.context, key)
        if record is None or record.state != ExecutionState.FAILED.value:
            raise LookupError(f"no failed execution with the key {key!r}")
        if record.call is None:
            why = record.call_problem or "its record has none"
            raise ValueError(f"the call of {key!r} was not kept: {why}")
        return await self._add_again(record.call)

    async def _add_again(self, envelope: bytes) -> Execution:
        """The retries' re-add: the call in `envelope`, due now, as its first
        attempt, with add() semantics (a strike or a key already taken refuses it)."""
        execution = from_envelope(self.context, decode_envelope(envelope))
        execution.when = datetime.now(UTC)
        execution.attempt = 1
        return await self._publish(execution, replace=False, check_strikes=True)

    async def purge_dead_letters(
        self, key: str | None = None, *, up_to_sequence: int | None = None
    ) -> int:
        """Remove the dead letters of `key` (all of them when None); returns how many.

        With `up_to_sequence` (a `DeadLetter.sequence` from `dead_letters()`),
        only the letters parked up to and including that one go: a caller that
        showed a letter removes that one, not a newer letter parked since.
        """
        return await purge_dead_letters(self.context, key, up_to_sequence)

    # -- internals shared with the worker ----------------------------------------

    def _resolve(self, function: TaskFunction | str) -> tuple[TaskFunction, str]:
        if isinstance(function, str):
            try:
                return self.tasks[function], function
            except KeyError:
                raise KeyError(
                    f"unknown task {function!r}: register it with docket.register() first"
                ) from None
        name = function.__name__
        # Registering again is a no-op once registered under its name; add() runs
        # this per call.
        if self.tasks.get(name) is not function:
            self.register(function)
        return function, name

    def _execution(
        self,
        function: TaskFunction,
        function_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        when: datetime | None,
        key: str | None,
        priority: Priority | None = None,
    ) -> Execution:
        return Execution(
            self.context,
            function,
            args,
            kwargs,
            key if key is not None else new_key(),
            aware(when) if when is not None else datetime.now(UTC),
            attempt=1,
            function_name=function_name,
            priority=priority,
        )

    def _refused(self, execution: Execution) -> bool:
        """Whether a strike refuses `execution` at add() (then marked STRUCK)."""
        if not self.strike_list.is_struck(execution):
            return False
        execution.disposition = Disposition.STRUCK
        metrics.count("docket_tasks_stricken", task_labels(self.name, execution.function_name))
        return True

    async def _publish(
        self,
        execution: Execution,
        replace: bool,
        check_strikes: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Execution:
        """Publish `execution` with add (or replace) semantics; with
        `check_strikes`, a strike refuses it first (marked STRUCK, not published).
        `extra_headers` mark a group member."""
        if check_strikes and self._refused(execution):
            return execution
        level = execution.priority.level
        if self.connection.missing_subjects and level != NORMAL_LEVEL:
            self._refuse_missing_level(level)
        data = encode(execution)
        # The admission limit (QueueFull); no I/O unless the stream looks full.
        if not self.queue_bound.admit(len(data)):
            await self.queue_bound.confirm(len(data))
        subject, headers = placement(self.names, execution.key, execution.when, level)
        new_task_headers(self.names, execution.key, headers)
        if extra_headers:
            headers.update(extra_headers)
        with telemetry.adding(self.context, execution, headers, replace):
            # A replace clears the key, then claims it; if another add slips in
            # between, clear again: the last replace wins, as in docket.
            for _ in range(10 if replace else 1):
                if replace:
                    await self._purge(execution.key)
                try:
                    ack = await self.connection.publish(subject, data, headers)
                except APIError as error:
                    if error.err_code != WRONG_LAST_SEQUENCE:
                        raise
                    execution.disposition = Disposition.ALREADY_SCHEDULED
                    continue
                execution.disposition = Disposition.SCHEDULED
                execution.state = queued_or_scheduled(self.names, subject)
                labels = task_labels(self.name, execution.function_name)
                metrics.count("docket_tasks_replaced" if replace else "docket_tasks_added", labels)
                metrics.count("docket_tasks_scheduled", labels)
                if replace:
                    # The purge cannot reach a copy a worker already prefetched: tell
                    # workers that copies older than this one are void (not to run).
                    await self.connection.nc.publish(
                        self.names.cancel(execution.key), str(ack.seq).encode()
                    )
                return execution
        if replace:
            raise RuntimeError(f"could not replace {execution.key!r}: the key kept being re-added")
        return execution

    def _refuse_missing_level(self, level: int) -> None:
        subjects = self.names.level_filter(level)
        if subjects in self.connection.missing_subjects:
            raise RuntimeError(
                f"stream {self.names.stream} was made before priorities and lacks "
                f"{subjects}; this connection may not update it: open the docket once "
                "as a user allowed to ($JS.API.STREAM.UPDATE), e.g. the admin, to add "
                "the priority levels' subjects"
            )

    async def _publish_many(
        self, calls: Iterable[TaskCall], replace: bool, chunk_size: int | None
    ) -> list[Execution]:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        executions = [
            self._execution(
                call.function,
                call.function_name or call.function.__name__,
                call.args,
                call.kwargs,
                call.when,
                call.key,
                call.priority,
            )
            for call in calls
        ]

        async def one(execution: Execution) -> None:
            if self._refused(execution):
                return
            try:
                await self._publish(execution, replace)
            except Exception as error:
                execution.disposition = Disposition.FAILED
                execution.schedule_exception = error

        step = chunk_size or max(1, len(executions))
        for start in range(0, len(executions), step):
            await asyncio.gather(
                *(one(execution) for execution in executions[start : start + step])
            )
        return executions

    async def _purge(self, key: str) -> int:
        """Remove the key's messages from the work stream; returns how many there were."""
        return await self.connection.purge(self.names.stream, self.names.any_state(key))


class _Scheduler:
    """What `add(fn)` / `replace(fn)` return: call it with the task's arguments.

    An object rather than a closure: the closure over five variables allocated
    seven objects per add (function, cells), which the garbage collector then
    counts and, with a thousand adds in flight, scans and promotes.
    """

    __slots__ = (
        "_docket",
        "_function",
        "_function_name",
        "_key",
        "_priority",
        "_replace",
        "_when",
    )

    def __init__(
        self,
        docket: Docket,
        function: TaskFunction,
        function_name: str,
        when: datetime | None,
        key: str | None,
        replace: bool,
        priority: Priority | None = None,
    ) -> None:
        self._docket = docket
        self._priority = priority
        self._function = function
        self._function_name = function_name
        self._when = when
        self._key = key
        self._replace = replace

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Execution]:
        # Not a coroutine itself: it returns _publish's (one coroutine less per
        # add). The strike check stays in there, at the await, as before.
        docket = self._docket
        execution = docket._execution(  # pyright: ignore[reportPrivateUsage]
            self._function,
            self._function_name,
            args,
            kwargs,
            self._when,
            self._key,
            self._priority,
        )
        return docket._publish(  # pyright: ignore[reportPrivateUsage]
            execution, self._replace, check_strikes=True
        )
