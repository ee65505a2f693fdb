"""A perpetual health check: runs every few seconds, forever, with one key.

`Perpetual` schedules the next run after each one finishes (success or failure),
so there is always exactly one pending check; `automatic=True` makes every worker
that starts ensure the chain exists, with nobody having to add it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from docket_nats import Perpetual

logger = logging.getLogger("examples.health_check")

checks_run: list[str] = []


async def check_health(
    service: str = "payments-api",
    perpetual: Perpetual = Perpetual(every=timedelta(seconds=1), automatic=True),
) -> None:
    # A real check would call the service; this one records that it ran.
    checks_run.append(service)
    logger.info("health check #%d of %s: ok", len(checks_run), service)


tasks = [check_health]
