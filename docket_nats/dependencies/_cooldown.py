"""Cooldown: run the first, drop the others within a window (docket's semantics).

One key per task (or argument value) in the limits bucket records when the
last admitted run started. A run is admitted when that is more than `window`
ago (or absent) and its compare-and-set write of the new time wins; otherwise
it is dropped. The time is compared, not left to the key's TTL, because the
server's TTLs are whole seconds at least; the TTL only cleans the key up.
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


class Cooldown(Dependency["Cooldown"]):
    """Start at most one run per `window`; the others within it are dropped.

    `Cooldown(timedelta(seconds=30))` as a default, or per value:
    `customer_id: Annotated[int, Cooldown(timedelta(seconds=30))]`.
    """

    def __init__(self, window: timedelta, *, scope: str | None = None) -> None:
        self.window = window
        self.scope = scope
        self._argument: tuple[str, Any] | None = None

    def bind_to_parameter(self, name: str, value: Any) -> Cooldown:
        bound = Cooldown(self.window, scope=self.scope)
        bound._argument = (name, value)
        return bound

    async def __aenter__(self) -> Self:
        execution = current_execution.get()
        store = await limit_store(current_execution.get().docket)
        key = window_key("cooldown", self.scope, self._argument, execution.function_name)
        reason = f"cooldown ({self.window}) on {key}"
        window = self.window.total_seconds()
        for _ in range(ATTEMPTS):
            now = time.time()
            data, revision = await store.read(key)
            if data and now - json.loads(data)["at"] < window:
                raise AdmissionBlocked(execution, reason, reschedule=False)
            started = json.dumps({"at": now, "task": execution.key}).encode()
            if await store.write(key, started, revision, window) is not None:
                return self
        raise AdmissionBlocked(execution, f"{reason} (contended)")
