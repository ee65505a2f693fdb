"""ConcurrencyLimit: at most N runs at once per argument value (or per task), across workers.

A limit of N is N slot keys `concurrency.<scope>.<which>.<i>` in the docket's
limits bucket (_limit_store.py). A run takes a slot by creating its key with a
lease (a per-message TTL, refused while another run holds it), renews the lease
while it runs (a compare-and-set on the revision it wrote), and releases it by
purging the key when it ends. A worker that dies stops renewing: its slots free
themselves when their leases expire, with nothing to scavenge.

When all N are held the run is rescheduled (_admission.py says why a reschedule
and not a nak) after about as long as a run under this limit has taken in this
process, doubling (up to 16x) each time the same run is refused again: a waiting
run checks back about when a slot may be free, never in a tight loop. (docket
parks waiters and wakes one per release; here a waiter may start up to one
delay after a slot frees: see "Flow control" in docs/architecture.md.)
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self, overload

from ._admission import AdmissionBlocked
from ._base import (
    Dependency,
    current_execution,
    current_worker_context,
    run_arguments,
    run_stack,
)
from ._limit_store import LimitStore, limit_key, limit_store

if TYPE_CHECKING:
    from ..execution import Execution

logger = logging.getLogger("docket_nats.dependencies")

# A slot's lease is the workers' redelivery timeout, within these bounds: long
# enough to survive a stalled event loop, short enough that a dead worker's slot
# is not lost for long.
MINIMUM_LEASE = 2.0
MAXIMUM_LEASE = 30.0
# Renewals per lease: two may be lost before the slot is.
RENEWALS_PER_LEASE = 3
# Bounds of a blocked run's retry delay.
MINIMUM_RETRY = 0.05
DEFAULT_RETRY = 0.1
# Weight of the newest run in the per-limit average run time.
AVERAGE_WEIGHT = 0.2

# Per waiting run (task key): how often it was refused in a row, here (bounded).
_blocked: dict[str, int] = {}
REMEMBERED_RUNS = 10_000
BACKOFF_LIMIT = 16
# Per limit key: a moving average of how long a run under it took (this process).
_run_times: dict[str, float] = {}
REMEMBERED_LIMITS = 10_000


class ConcurrencyBlocked(AdmissionBlocked):
    """No slot of the limit was free: the run is rescheduled."""

    def __init__(
        self, execution: Execution, concurrency_key: str, max_concurrent: int, delay: timedelta
    ) -> None:
        self.concurrency_key = concurrency_key
        self.max_concurrent = max_concurrent
        super().__init__(
            execution,
            reason=f"concurrency limit ({max_concurrent} max) on {concurrency_key}",
            retry_delay=delay,
        )


class ConcurrencyLimit(Dependency["ConcurrencyLimit"]):
    """At most `max_concurrent` runs at once, per value of `argument_name` or per task.

    As a default: `ConcurrencyLimit("customer_id", max_concurrent=2)`, or
    `ConcurrencyLimit(max_concurrent=3)` for the task as a whole; as metadata:
    `customer_id: Annotated[int, ConcurrencyLimit(2)]`. `scope` separates limits
    that would otherwise share keys. Holds across every worker of the docket.
    """

    single = True

    @overload
    def __init__(self, max_concurrent: int, /, *, scope: str | None = None) -> None: ...

    @overload
    def __init__(
        self, argument_name: str, max_concurrent: int = 1, scope: str | None = None
    ) -> None: ...

    @overload
    def __init__(self, *, max_concurrent: int = 1, scope: str | None = None) -> None: ...

    def __init__(
        self,
        argument_name: str | int | None = None,
        max_concurrent: int = 1,
        scope: str | None = None,
    ) -> None:
        if isinstance(argument_name, int):  # Annotated[int, ConcurrencyLimit(2)]
            self.argument_name: str | None = None
            self.max_concurrent = argument_name
        else:
            self.argument_name = argument_name
            self.max_concurrent = max_concurrent
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.scope = scope
        self._bound: tuple[str, Any] | None = None  # (parameter, value) under Annotated
        self._concurrency_key: str | None = None
        self._slot: _Slot | None = None

    def bind_to_parameter(self, name: str, value: Any) -> ConcurrencyLimit:
        bound = ConcurrencyLimit(
            self.argument_name or name, max_concurrent=self.max_concurrent, scope=self.scope
        )
        bound._bound = (bound.argument_name or name, value)
        return bound

    @property
    def concurrency_key(self) -> str:
        """The key this run's limit counts under (only inside a run)."""
        if self._concurrency_key is None:
            raise RuntimeError("ConcurrencyLimit not initialized - use within task context")
        return self._concurrency_key

    def _key_for(self, execution: Execution) -> str:
        scope = self.scope or ""
        if self.argument_name is None:
            return limit_key("concurrency", scope, "task", execution.function_name)
        if self._bound is not None and self._bound[0] == self.argument_name:
            value = self._bound[1]
        else:
            try:
                value = run_arguments()[self.argument_name]
            except KeyError:
                raise ValueError(
                    f"ConcurrencyLimit argument {self.argument_name!r} not found in the task's "
                    f"arguments; it has {sorted(execution.kwargs)}"
                ) from None
        return limit_key("concurrency", scope, "argument", self.argument_name, value)

    async def __aenter__(self) -> Self:
        execution = current_execution.get()
        store = await limit_store(current_execution.get().docket)
        key = self._key_for(execution)
        lease = _lease()
        slot = await _acquire(store, key, self.max_concurrent, execution, lease)
        if slot is None:
            delay = _retry_delay(key, execution.key, lease)
            raise ConcurrencyBlocked(execution, key, self.max_concurrent, timedelta(seconds=delay))
        _blocked.pop(execution.key, None)
        # A fresh object per run: the declared default is shared by concurrent runs.
        held = copy.copy(self)
        held._concurrency_key = key
        held._slot = slot
        run_stack().push_async_callback(slot.release)
        return held


def _retry_delay(key: str, task_key: str, lease: float) -> float:
    """About one run's time under this limit, doubling with each refusal of the same
    run (up to BACKOFF_LIMIT times), jittered: waiting runs check back about when a
    slot may be free, and ever less often while the limit stays busy."""
    refusals = _blocked.pop(task_key, 0)
    _blocked[task_key] = refusals + 1
    if len(_blocked) > REMEMBERED_RUNS:
        del _blocked[next(iter(_blocked))]  # the longest-forgotten run
    base = max(_run_times.get(key, DEFAULT_RETRY), MINIMUM_RETRY)
    delay: float = base * min(1 << min(refusals, 8), BACKOFF_LIMIT) * random.uniform(0.5, 1.0)
    return min(delay, lease / 2)


def _lease() -> float:
    try:
        timeout = current_worker_context.get().redelivery_timeout.total_seconds()
    except LookupError:  # run outside a worker (tests calling run_task)
        timeout = MAXIMUM_LEASE
    return min(max(timeout, MINIMUM_LEASE), MAXIMUM_LEASE)


async def _acquire(
    store: LimitStore, key: str, slots: int, execution: Execution, lease: float
) -> _Slot | None:
    """Take a free slot (trying them from a random one, to spread contention)."""
    value = f"{_holder()} {execution.key}".encode()
    first = random.randrange(slots)
    for offset in range(slots):
        slot_key = f"{key}.{(first + offset) % slots}"
        sent = time.monotonic()
        revision = await store.write(slot_key, value, 0, lease)
        if revision is not None:
            return _Slot(store, key, slot_key, value, revision, sent, lease)
    return None


def _holder() -> str:
    try:
        return current_worker_context.get().name
    except LookupError:
        return "?"


class _Slot:
    """One held slot: renewed by the keeper while the run goes on, released at its end."""

    def __init__(
        self,
        store: LimitStore,
        key: str,
        slot_key: str,
        value: bytes,
        revision: int,
        sent: float,
        lease: float,
    ) -> None:
        self.store = store
        self.key = key
        self.slot_key = slot_key
        self.value = value
        self.revision = revision
        # When the write that set the lease running was sent: it expires no
        # sooner than `lease` after that.
        self.sent = sent
        self.taken = sent
        self.lease = lease
        self.lost = False
        self.released = False
        _keeper.hold(self)

    async def renew(self) -> None:
        sent = time.monotonic()
        try:
            revision = await self.store.write(self.slot_key, self.value, self.revision, self.lease)
        except Exception as error:  # disconnected: the next round tries again
            logger.debug("could not renew the lease on %s: %s", self.slot_key, error)
            return
        if revision is None:
            if not self.released:
                # Expired (the event loop stalled past the lease) and maybe taken.
                logger.warning("lost the concurrency slot %s: its lease expired", self.slot_key)
                self.lost = True
            return
        self.revision, self.sent = revision, sent

    async def release(self) -> None:
        _keeper.drop(self)
        ran = time.monotonic() - self.taken
        previous = _run_times.get(self.key)
        _run_times[self.key] = (
            ran if previous is None else previous + AVERAGE_WEIGHT * (ran - previous)
        )
        if len(_run_times) > REMEMBERED_LIMITS:  # one per argument value: keep it bounded
            del _run_times[next(iter(_run_times))]
        if self.lost:
            return
        try:
            if time.monotonic() - self.sent < self.lease * 0.75:
                # Surely still ours: purge, which leaves no marker, so the next
                # create (expecting no message on the key) succeeds at once.
                await self.store.purge(self.slot_key)
            else:
                # Maybe expired and taken by another run: remove only if still ours.
                await self.store.delete(self.slot_key, self.revision)
        except Exception as error:  # disconnected: the lease frees it
            logger.warning("could not release %s (its lease will): %s", self.slot_key, error)


class _Keeper:
    """Renews every slot this process holds from one loop (not a task per slot),
    each a few times per lease; the loop ends when no slot is held."""

    def __init__(self) -> None:
        self.held: set[_Slot] = set()
        self.loop_task: asyncio.Task[None] | None = None

    def hold(self, slot: _Slot) -> None:
        self.held.add(slot)
        task = self.loop_task
        # (a task of an event loop that has since closed never finishes: replace it too)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self.loop_task = asyncio.create_task(self._keep(), name="concurrency slot leases")

    def drop(self, slot: _Slot) -> None:
        self.held.discard(slot)

    async def _keep(self) -> None:
        while self.held:
            now = time.monotonic()
            due = [slot for slot in self.held if now - slot.sent >= slot.lease / RENEWALS_PER_LEASE]
            if due:
                await asyncio.gather(*(slot.renew() for slot in due))
            soonest = min(
                (slot.sent + slot.lease / RENEWALS_PER_LEASE for slot in self.held), default=now
            )
            await asyncio.sleep(max(soonest - time.monotonic(), TICK))


# How often the keeper looks at most (a slot's renewal is due every lease / 3 >= 0.67 s).
TICK = 0.1
_keeper = _Keeper()
