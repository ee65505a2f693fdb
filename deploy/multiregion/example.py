"""Multi-region docket-nats on loopback: a docket per region, a worker pool per region.

    python deploy/multiregion/example.py

Starts the regions east and west (a supercluster joined by gateways), creates the
docket `orders-east` from an east client and `orders-west` from a west client -
JetStream places each stream in its creator's region - runs a worker pool per
region, and adds tasks in both regions: each runs in its own region. Then east's
pool goes away and a west worker takes over `orders-east` across the gateway
(the stream stays in east: this covers losing a region's workers, not its servers;
for that, mirror the stream into the other region).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from regions import Regions

from docket_nats import Docket, Worker
from docket_nats.dependencies import CurrentWorker

ran: list[tuple[str, str]] = []


async def ship(order: str, worker: Worker = CurrentWorker()) -> None:
    ran.append((order, worker.name))


def pool(docket: Docket, name: str) -> Worker:
    docket.register(ship)
    return Worker(
        docket,
        name=name,
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=1),
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="docket-regions-") as directory:
        regions = Regions(Path(directory), free_ports=False)
        regions.start()
        try:
            await run(regions)
        finally:
            regions.stop()


async def run(regions: Regions) -> None:
    from deploy.local_cluster import wait_for_jetstream

    await wait_for_jetstream([regions.url("east"), regions.url("west")], 30)
    async with (
        Docket("orders-east", url=regions.url("east")) as east,
        Docket("orders-west", url=regions.url("west")) as west,
    ):
        for docket in (east, west):
            info = await docket.connection.js.stream_info(docket.names.stream)
            print(f"{docket.names.stream} placed in cluster {info.cluster and info.cluster.name}")
        async with pool(east, "east-pool") as east_pool, pool(west, "west-pool") as west_pool:
            await east.add(ship)("order-1 (added in east)")
            await west.add(ship)("order-2 (added in west)")
            await east_pool.run_until_finished()
            await west_pool.run_until_finished()
        # East's pool is gone: a west worker serves east's docket over the gateway.
        async with Docket("orders-east", url=regions.url("west")) as east_from_west:
            await east.add(ship)("order-3 (added in east, east pool down)")
            async with pool(east_from_west, "west-standby") as standby:
                await standby.run_until_finished()
    for order, worker in ran:
        print(f"{order} ran on {worker}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    asyncio.run(main())
