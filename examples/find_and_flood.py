"""Find & flood: one task finds the work, then floods the docket with a task per item.

The finder is cheap and runs once; the per-item tasks spread across every worker.
Keys make the flood idempotent: running the finder twice does not double the work.
"""

from __future__ import annotations

import logging

from docket_nats import CurrentDocket, Docket

logger = logging.getLogger("examples.find_and_flood")

processed: list[int] = []


async def find_overdue_invoices(batch: int = 20, docket: Docket = CurrentDocket()) -> None:
    invoice_ids = range(1000, 1000 + batch)  # a real finder would query a database
    for invoice_id in invoice_ids:
        await docket.add(send_reminder, key=f"reminder-{invoice_id}")(invoice_id)
    logger.info("found %d overdue invoices; flooded one reminder task each", batch)


async def send_reminder(invoice_id: int) -> None:
    processed.append(invoice_id)
    logger.info("reminder sent for invoice %d", invoice_id)


tasks = [find_overdue_invoices, send_reminder]
