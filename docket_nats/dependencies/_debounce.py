"""Debounce: wait until submissions settle, then run once (docket's trailing edge).

One key per task (or argument value) in the limits bucket holds the winner (the
first run to arrive) and when a submission was last seen. The winner is
rescheduled until `settle` has passed with no new submission, then runs; every
other run refreshes "last seen" and is dropped. Each step is a read and a
compare-and-set write on the key's revision, retried when another worker wrote
in between, so it holds across workers.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any, Self

from ._admission import AdmissionBlocked
from ._base import Dependency, current_execution
from ._limit_store import limit_store, window_key

# Compare-and-set rounds before giving up for now (the run is then retried).
ATTEMPTS = 20
# The key outlives the window this many times over (docket's choice).
TTL_FACTOR = 10


class Debounce(Dependency["Debounce"]):
    """Run once `settle` after the last of a burst of submissions; drop the rest.

    `Debounce(timedelta(seconds=5))` as a default debounces the task;
    `customer_id: Annotated[int, Debounce(timedelta(seconds=5))]` per value.
    """

    single = True

    def __init__(self, settle: timedelta, *, scope: str | None = None) -> None:
        self.settle = settle
        self.scope = scope
        self._argument: tuple[str, Any] | None = None

    def bind_to_parameter(self, name: str, value: Any) -> Debounce:
        bound = Debounce(self.settle, scope=self.scope)
        bound._argument = (name, value)
        return bound

    async def __aenter__(self) -> Self:
        execution = current_execution.get()
        store = await limit_store(current_execution.get().docket)
        key = window_key("debounce", self.scope, self._argument, execution.function_name)
        reason = f"debounce ({self.settle}) on {key}"
        settle_ms = self.settle.total_seconds() * 1000
        ttl = self.settle.total_seconds() * TTL_FACTOR
        for _ in range(ATTEMPTS):
            now_ms = time.time() * 1000
            data, revision = await store.read(key)
            state = json.loads(data) if data else None
            if state is None:  # the first of a burst: it waits for the burst to settle
                mine = json.dumps({"winner": execution.key, "seen": now_ms}).encode()
                if await store.write(key, mine, revision, ttl) is not None:
                    raise AdmissionBlocked(execution, reason, retry_delay=self.settle)
                continue
            if state["winner"] == execution.key:
                quiet_ms = now_ms - state["seen"]
                if quiet_ms >= settle_ms:
                    if await store.delete(key, revision):
                        return self
                    continue
                # Still busy: keep the key alive and look again when it may have settled.
                await store.write(key, data or b"", revision, ttl)
                raise AdmissionBlocked(
                    execution, reason, retry_delay=timedelta(milliseconds=settle_ms - quiet_ms)
                )
            seen = json.dumps({"winner": state["winner"], "seen": now_ms}).encode()
            if await store.write(key, seen, revision, ttl) is not None:
                raise AdmissionBlocked(execution, reason, reschedule=False)
        raise AdmissionBlocked(execution, f"{reason} (contended)")
