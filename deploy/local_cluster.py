"""A three-node nats-server cluster on 127.0.0.1 for tests and scripts.

Each node is a `ServerProcess` (client port, JetStream store) plus a small config
file naming the server and its routes; free ports are picked at start, so
several clusters can run side by side. Used by tests/test_cluster.py and
deploy/chaos.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats

from docket_nats._embedded import EMBEDDED_HOST, ServerProcess, free_port

NODE_CONFIG = """\
server_name: {name}
jetstream {{
  max_memory_store: 256MB
  max_file_store: 2GB
}}
cluster {{
  name: {cluster}
  listen: {host}:{route_port}
  no_advertise: {no_advertise}
  routes: [
{routes}
  ]
}}
"""


@dataclass
class Cluster:
    """Three (or `size`) JetStream nodes joined by routes."""

    directory: Path
    size: int = 3
    name: str = "docket"
    # False: nodes do not tell clients the other nodes' URLs, so a client that
    # connects through a proxy (deploy/chaos.py) reconnects through it too.
    advertise: bool = True
    nodes: dict[str, ServerProcess] = field(default_factory=dict[str, ServerProcess])

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        route_ports = [free_port() for _ in range(self.size)]
        routes = "\n".join(f"    nats-route://{EMBEDDED_HOST}:{port}" for port in route_ports)
        for index, route_port in enumerate(route_ports, start=1):
            name = f"n{index}"
            config = self.directory / f"{name}.conf"
            config.write_text(
                NODE_CONFIG.format(
                    name=name,
                    cluster=self.name,
                    host=EMBEDDED_HOST,
                    route_port=route_port,
                    routes=routes,
                    no_advertise="false" if self.advertise else "true",
                )
            )
            self.nodes[name] = ServerProcess(
                free_port(), self.directory / name / "store", config=config
            )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes.values()]

    @property
    def url(self) -> str:
        """All nodes, comma-separated (what --url / $DOCKET_URL take)."""
        return ",".join(self.urls)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def kill(self, name: str) -> None:
        self.nodes[name].kill()

    def restart(self, name: str) -> None:
        self.nodes[name].start()

    def alive(self) -> list[str]:
        return [
            name
            for name, node in self.nodes.items()
            if node.process is not None and node.process.poll() is None
        ]

    async def wait_ready(self, within: float = 20.0) -> None:
        """Until JetStream has a meta leader (R3 assets can be created)."""
        await wait_for_jetstream(self.urls, within)


async def wait_for_jetstream(urls: Sequence[str], within: float = 20.0) -> None:
    """Poll `account_info` until the JetStream meta layer answers (bounded)."""
    deadline = time.monotonic() + within
    nc = await nats.connect(servers=list(urls), connect_timeout=2)  # pyright: ignore[reportUnknownMemberType]
    try:
        js = nc.jetstream(timeout=1)  # pyright: ignore[reportUnknownMemberType]
        while True:
            try:
                await js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def stream_leader(urls: Sequence[str], stream: str) -> str:
    """The server name leading `stream` right now."""
    nc = await nats.connect(servers=list(urls), connect_timeout=2)  # pyright: ignore[reportUnknownMemberType]
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)  # pyright: ignore[reportUnknownMemberType]
        assert info.cluster is not None and info.cluster.leader is not None
        return info.cluster.leader
    finally:
        await nc.close()
