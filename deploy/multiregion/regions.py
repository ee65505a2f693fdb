"""Start the two regions of deploy/multiregion/ on loopback (free ports or the
configured ones) - shared by run.sh, the example and tests/test_cluster.py.

The configs are used as written, except that with `free_ports=True` every
127.0.0.1:PORT in them is rewritten to a free port (so tests can run beside a
running example).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from docket_nats._embedded import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
REGIONS = ("east", "west")
_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")


@dataclass
class Regions:
    directory: Path
    free_ports: bool = True
    servers: dict[str, ServerProcess] = field(default_factory=dict[str, ServerProcess])

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        texts = {region: (HERE / f"{region}.conf").read_text() for region in REGIONS}
        ports = sorted({int(p) for text in texts.values() for p in _ADDRESS.findall(text)})
        mapping = {port: (free_port() if self.free_ports else port) for port in ports}
        for region, text in texts.items():
            rewritten = _ADDRESS.sub(lambda m: f"127.0.0.1:{mapping[int(m.group(1))]}", text)
            config = self.directory / f"{region}.conf"
            config.write_text(rewritten)
            client = int(re.search(r"^listen: 127\.0\.0\.1:(\d+)", rewritten, re.M).group(1))  # type: ignore[union-attr]
            self.servers[region] = ServerProcess(
                client, self.directory / region / "store", config=config
            )

    def url(self, region: str) -> str:
        return self.servers[region].url

    def start(self) -> None:
        for server in self.servers.values():
            server.start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
