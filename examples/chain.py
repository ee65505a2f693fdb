"""A chain: each step schedules the next, passing its result along.

Every step is its own task, so each one is retried, logged and load-balanced on
its own, and a worker dying between steps loses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from docket_nats import CurrentDocket, Docket

logger = logging.getLogger("examples.chain")

finished: list[str] = []


@dataclass
class Order:
    order_id: str
    amount: float


async def validate_order(order: Order, docket: Docket = CurrentDocket()) -> None:
    logger.info("validated %s", order.order_id)
    await docket.add(charge_order)(order)


async def charge_order(order: Order, docket: Docket = CurrentDocket()) -> None:
    logger.info("charged %.2f for %s", order.amount, order.order_id)
    await docket.add(ship_order)(order.order_id)


async def ship_order(order_id: str) -> None:
    finished.append(order_id)
    logger.info("shipped %s", order_id)


tasks = [validate_order, charge_order, ship_order]
