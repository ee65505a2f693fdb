"""Liveness probe for a docket-nats worker: is its heartbeat in the workers bucket?

    python deploy/liveness.py WORKER_NAME        # exit 0: alive, 1: no heartbeat

Connects as the worker itself does ($DOCKET_URL, $DOCKET_NAME, $DOCKET_INBOX_PREFIX,
$DOCKET_CREDENTIALS) and looks the name up in `docket.workers()`: heartbeats
expire after `missed_heartbeats` intervals, so a worker whose event loop is stuck
(or that lost NATS for that long) drops out and the probe fails. Run the worker
with `--name` equal to the name probed (the pod name in deploy/k8s/worker.yaml).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from docket_nats import Docket


async def alive(name: str) -> bool:
    options: dict[str, Any] = {"connect_timeout": 3, "max_reconnect_attempts": 0}
    if os.environ.get("DOCKET_INBOX_PREFIX"):
        options["inbox_prefix"] = os.environ["DOCKET_INBOX_PREFIX"]
    if os.environ.get("DOCKET_CREDENTIALS"):
        options["user_credentials"] = os.environ["DOCKET_CREDENTIALS"]
    async with Docket(
        os.environ.get("DOCKET_NAME", "docket"),
        url=os.environ.get("DOCKET_URL"),
        replicas=int(os.environ.get("DOCKET_REPLICAS", "1")),
        connect_options=options,
    ) as docket:
        return any(worker.name == name for worker in await docket.workers())


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        ok = asyncio.run(asyncio.wait_for(alive(sys.argv[1]), timeout=10))
    except Exception as error:  # cannot tell: let the probe's failureThreshold decide
        print(f"liveness: {error!r}", file=sys.stderr)
        return 1
    print("alive" if ok else f"no heartbeat from {sys.argv[1]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
