"""Admission control: a dependency may refuse to let a run start (docket's semantics).

A flow-control dependency (ConcurrencyLimit, Debounce, Cooldown, RateLimit)
raises `AdmissionBlocked` from `__aenter__`. The run then never calls the task:
`run_task` stops resolving, exits what it had entered (a slot taken by an
earlier limit is released), and the worker settles the blocked run
(worker/_refused_runs.py):

- `reschedule=True`: the run goes back to the work stream, due `retry_delay`
  from now, through `reschedule` (_work_stream.py). That publish expects the running
  message to be the key's last, so the key is handed over atomically (a
  `docket.cancel()` or `replace()` that came in meanwhile wins), the attempt
  number stays as it was, and the worker then acks the old message.
  Not `message.nak(delay=...)`: every nak counts as a delivery, and the worker
  parks a message delivered `max_deliveries` times as a dead letter, so a task
  that waits long for a slot would end up there; parked naks also count
  against the consumer's max_ack_pending and stop it delivering (docs/nats-facts.md §2).
- `reschedule=False`: the run is dropped, recorded as cancelled (what docket
  does for a debounced or cooled-down duplicate).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..execution import Execution

# docket's delay for a blocked run that names none.
DEFAULT_RETRY_DELAY = timedelta(milliseconds=100)


class AdmissionBlocked(Exception):
    """A run may not start now: rescheduled (default) or dropped.

    `handled=True` means the gate already did all there is to do with the run;
    the worker then only acks its message.
    """

    def __init__(
        self,
        execution: Execution,
        reason: str = "admission control",
        *,
        handled: bool = False,
        reschedule: bool = True,
        retry_delay: timedelta | None = None,
    ) -> None:
        self.execution = execution
        self.reason = reason
        self.handled = handled
        self.reschedule = reschedule
        self.retry_delay = retry_delay
        super().__init__(f"{execution.key}: {reason}")
