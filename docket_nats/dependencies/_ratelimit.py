"""RateLimit: at most `limit` runs per sliding window `per` (docket's semantics).

One key per task (or argument value) in the limits bucket holds the log of the
runs admitted within the window (start times). A run prunes what is older than
the window; with fewer than `limit` left it appends itself with a
compare-and-set write (retried when another worker wrote in between) and runs.
Otherwise it is rescheduled to when the oldest entry leaves the window, or
dropped with `drop=True`. A run that a later dependency blocks takes its entry
back, as in docket.
"""

from __future__ import annotations

import json
import time
from contextlib import suppress
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from ._admission import AdmissionBlocked
from ._base import Dependency, current_execution, run_stack
from ._limit_store import LimitStore, limit_store, window_key

# Compare-and-set rounds before giving up for now (the run is then retried).
ATTEMPTS = 20
# The log outlives the window this many times over (docket's choice).
TTL_FACTOR = 2


class RateLimit(Dependency["RateLimit"]):
    """At most `limit` runs within any `per`; excess rescheduled (or dropped if `drop`).

    `RateLimit(10, per=timedelta(minutes=1))` as a default, or per value:
    `customer_id: Annotated[int, RateLimit(5, per=timedelta(minutes=1), drop=True)]`.
    """

    def __init__(
        self, limit: int, *, per: timedelta, drop: bool = False, scope: str | None = None
    ) -> None:
        self.limit = limit
        self.per = per
        self.drop = drop
        self.scope = scope
        self._argument: tuple[str, Any] | None = None

    def bind_to_parameter(self, name: str, value: Any) -> RateLimit:
        bound = RateLimit(self.limit, per=self.per, drop=self.drop, scope=self.scope)
        bound._argument = (name, value)
        return bound

    async def __aenter__(self) -> Self:
        execution = current_execution.get()
        store = await limit_store(current_execution.get().docket)
        key = window_key("ratelimit", self.scope, self._argument, execution.function_name)
        reason = f"rate limit ({self.limit}/{self.per}) on {key}"
        window = self.per.total_seconds()
        member = f"{execution.key}:{time.time_ns()}"
        for _ in range(ATTEMPTS):
            now = time.time()
            data, revision = await store.read(key)
            log = [entry for entry in _entries(data) if entry[1] > now - window]
            if len(log) >= self.limit:
                if self.drop:
                    raise AdmissionBlocked(execution, reason, reschedule=False)
                wait = max(min(at for _, at in log) + window - now, 0.001)
                raise AdmissionBlocked(execution, reason, retry_delay=timedelta(seconds=wait))
            log.append((member, now))
            if await store.write(key, _encode(log), revision, window * TTL_FACTOR) is not None:
                run_stack().push_async_exit(_TakeBack(store, key, member, window))
                return self
        raise AdmissionBlocked(execution, f"{reason} (contended)")


class _TakeBack:
    """On the way out of a blocked run: remove its entry from the log."""

    def __init__(self, store: LimitStore, key: str, member: str, window: float) -> None:
        self.store, self.key, self.member, self.window = store, key, member, window

    async def __call__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is None or not issubclass(exc_type, AdmissionBlocked):
            return False
        with suppress(Exception):  # best effort: the entry ages out anyway
            for _ in range(ATTEMPTS):
                data, revision = await self.store.read(self.key)
                log = [entry for entry in _entries(data) if entry[0] != self.member]
                written = await self.store.write(self.key, _encode(log), revision, self.window)
                if written is not None:
                    break
        return False


def _entries(data: bytes | None) -> list[tuple[str, float]]:
    if not data:
        return []
    return [(str(member), float(at)) for member, at in json.loads(data)]


def _encode(log: list[tuple[str, float]]) -> bytes:
    return json.dumps(log).encode()
