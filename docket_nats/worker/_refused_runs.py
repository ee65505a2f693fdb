"""Settling a run that flow control refused (see dependencies/_admission.py).

- `reschedule=True`: the run goes back to the work stream, due `retry_delay`
  from now, handed over from its running message (`reschedule`), so a cancel or
  replace that came in meanwhile wins and the attempt number stays; the
  executor then acks the old message.
- `reschedule=False`: the run is dropped, recorded as cancelled (what docket
  does for a debounced or cooled-down duplicate).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from .._work_stream import reschedule
from ..dependencies._admission import DEFAULT_RETRY_DELAY, AdmissionBlocked
from ._recorder import StateRecorder

logger = logging.getLogger("docket_nats.dependencies")


async def settle_blocked(blocked: AdmissionBlocked, recorder: StateRecorder) -> bool:
    """Reschedule or drop a run that a dependency refused; True when dropped (the
    run has ended for good)."""
    execution = blocked.execution
    if blocked.handled:
        return False
    if blocked.reschedule:
        delay = blocked.retry_delay or DEFAULT_RETRY_DELAY
        when = datetime.now(UTC) + delay
        handed_over = await reschedule(execution, when, execution.attempt)
        logger.debug(
            "⏳ %s blocked by %s: %s",
            execution.key,
            blocked.reason,
            f"retrying in {delay.total_seconds():.3f}s" if handed_over else "superseded meanwhile",
        )
        return False
    logger.info("⏭ %s dropped by %s", execution.key, blocked.reason)
    await recorder.dropped(execution)
    return True
