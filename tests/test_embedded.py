"""The local servers docket-nats starts by itself: memory:// and the embedded default.

Every server a test starts here is stopped by the code under test (the last user
leaves) and checked to be gone; a safety net stops anything left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from docket_nats import Docket, Worker
from docket_nats import _embedded as embedded
from docket_nats._embedded import ServerProcess, free_port, is_listening, nats_server_binary


@pytest.fixture(autouse=True)
def no_server_left_behind() -> Iterator[None]:
    before = set(embedded._shared)  # pyright: ignore[reportPrivateUsage]
    yield
    leftovers = set(embedded._shared) - before  # pyright: ignore[reportPrivateUsage]
    for name in leftovers:
        shared = embedded._shared.pop(name)  # pyright: ignore[reportPrivateUsage]
        if shared.server is not None:
            shared.server.stop()
    assert not leftovers, f"servers left running: {leftovers}"


def memory_url() -> str:
    return f"memory://test-{uuid.uuid4().hex[:8]}"


def shared_server(url: str | None) -> ServerProcess:
    shared = embedded._shared[url or ""]  # pyright: ignore[reportPrivateUsage]
    assert shared.server is not None
    return shared.server


def assert_stopped(server: ServerProcess) -> None:
    assert server.process is not None and server.process.poll() is not None
    assert not is_listening(server.port)


async def run_one_task(docket: Docket) -> list[str]:
    seen: list[str] = []

    async def record(value: str) -> None:
        seen.append(value)

    await docket.add(record)("ran")
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        await worker.run_until_finished()
    return seen


def test_the_wheel_brings_a_recent_nats_server() -> None:
    binary = nats_server_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", version)
    assert found, version
    # Message schedules need 2.12; per-message TTL 2.11.
    assert (int(found[1]), int(found[2])) >= (2, 12), version


def test_an_explicit_binary_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKET_NATS_SERVER", str(tmp_path / "my-nats-server"))
    assert nats_server_binary() == tmp_path / "my-nats-server"


async def test_dockets_with_one_memory_url_share_a_server() -> None:
    url = memory_url()
    async with Docket(name="first", url=url) as first:
        server = shared_server(url)
        async with Docket(name="second", url=url) as second:
            assert second.connection.resolved == first.connection.resolved == [server.url]
            assert embedded._shared[url].users == 2  # pyright: ignore[reportPrivateUsage]
            assert await run_one_task(second) == ["ran"]
        # One user left: the server keeps running for it.
        assert server.process is not None and server.process.poll() is None
        assert await run_one_task(first) == ["ran"]
        store = server.store_dir
    # The last user is gone: the server stopped and its throw-away store is removed.
    assert_stopped(server)
    assert not store.exists()
    assert url not in embedded._shared  # pyright: ignore[reportPrivateUsage]


async def test_different_memory_urls_get_different_servers() -> None:
    one, two = memory_url(), memory_url()
    async with Docket(url=one) as first, Docket(url=two) as second:
        assert first.connection.resolved != second.connection.resolved
        servers = [shared_server(one), shared_server(two)]
    for server in servers:
        assert_stopped(server)


def test_acquire_and_release_count_users() -> None:
    url = memory_url()
    address = embedded._acquire(url)  # pyright: ignore[reportPrivateUsage]
    server = shared_server(url)
    try:
        assert embedded._acquire(url) == address  # pyright: ignore[reportPrivateUsage]
        embedded._release(url)  # pyright: ignore[reportPrivateUsage]
        assert is_listening(server.port)
    finally:
        embedded._release(url)  # pyright: ignore[reportPrivateUsage]
    assert_stopped(server)
    embedded._release(url)  # releasing what is not held is harmless  # pyright: ignore[reportPrivateUsage]


async def test_the_default_url_reuses_a_server_already_listening(
    monkeypatch: pytest.MonkeyPatch, nats_server: ServerProcess, tmp_path: Path
) -> None:
    # Something (another process, `docket-nats server`) already serves the
    # embedded port: Docket() connects to it and never stops it.
    monkeypatch.setattr(embedded, "EMBEDDED_PORT", nats_server.port)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    async with Docket(name=f"reuse-{uuid.uuid4().hex[:8]}") as docket:
        assert docket.connection.resolved == [nats_server.url]
        assert embedded._shared[""].server is None  # pyright: ignore[reportPrivateUsage]
        assert await run_one_task(docket) == ["ran"]
    assert nats_server.process is not None and nats_server.process.poll() is None
    assert is_listening(nats_server.port)


async def test_the_default_url_starts_the_embedded_server_when_none_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()
    monkeypatch.setattr(embedded, "EMBEDDED_PORT", port)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    async with Docket() as first, Docket(name="another") as second:
        server = shared_server(None)
        # The packaged nats.conf, with our port and store on the command line.
        assert server.config == embedded.embedded_config() and server.config.is_file()
        assert first.connection.resolved == second.connection.resolved == [server.url]
        assert server.port == port
        assert (tmp_path / "data" / "docket-nats" / "jetstream").is_dir()
        assert await run_one_task(first) == ["ran"]
    assert_stopped(server)
    # Unlike memory://, the embedded store is kept for the next start.
    assert (tmp_path / "data" / "docket-nats" / "jetstream").is_dir()


# A process using the embedded server: opens Docket(), adds a task, says "ready",
# then adds another task for each "add" line on stdin, and closes on "exit".
USER_PROCESS = """
import asyncio, sys
from docket_nats import Docket, tasks

async def main() -> None:
    async with Docket(name="shared-embedded") as docket:
        await docket.add(tasks.trace)("hello")
        print("ready", flush=True)
        while (await asyncio.to_thread(sys.stdin.readline)).strip() == "add":
            await docket.add(tasks.trace)("again")
            print("added", flush=True)

asyncio.run(main())
"""


class UserProcess:
    def __init__(self, environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", USER_PROCESS],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def exit(self) -> None:
        self.say("exit")
        assert self.process.wait(timeout=20) == 0


@pytest.fixture
def embedded_environment(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    environment = dict(
        os.environ, XDG_DATA_HOME=str(tmp_path / "data"), DOCKET_NATS_EMBEDDED_PORT=str(port)
    )
    yield environment
    # Safety net: a server these processes failed to stop.
    pid_file = tmp_path / "data" / "docket-nats" / f"nats-server-{port}.pid"
    if is_listening(port) and pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        pytest.fail("the embedded server outlived every process using it")


def test_the_embedded_server_outlives_its_starter_until_the_last_user_leaves(
    embedded_environment: dict[str, str],
) -> None:
    port = int(embedded_environment["DOCKET_NATS_EMBEDDED_PORT"])
    starter = UserProcess(embedded_environment)  # finds nothing listening: starts it
    other = UserProcess(embedded_environment)  # reuses it
    starter.exit()
    assert is_listening(port), "the starter left, but another process still uses the server"
    other.say("add")
    assert other.read() == "added"
    other.exit()
    assert not is_listening(port), "the last user stops the server docket-nats started"


def test_users_that_died_without_leaving_do_not_keep_the_server(
    embedded_environment: dict[str, str],
) -> None:
    port = int(embedded_environment["DOCKET_NATS_EMBEDDED_PORT"])
    starter = UserProcess(embedded_environment)
    crashed = UserProcess(embedded_environment)
    crashed.process.kill()
    crashed.process.wait()
    starter.exit()
    assert not is_listening(port)


def test_a_server_started_outside_docket_nats_is_never_stopped(
    embedded_environment: dict[str, str], tmp_path: Path
) -> None:
    port = int(embedded_environment["DOCKET_NATS_EMBEDDED_PORT"])
    outside = ServerProcess(port, tmp_path / "outside")  # as `docket-nats server` would
    outside.start()
    try:
        UserProcess(embedded_environment).exit()
        assert is_listening(port)
    finally:
        outside.stop()


def test_a_stale_pid_file_never_names_another_server(tmp_path: Path) -> None:
    server = ServerProcess(free_port(), tmp_path / "other")
    server.start()
    try:
        assert server.process is not None
        pid = server.process.pid
        assert embedded._is_nats_server(pid, server.port)  # pyright: ignore[reportPrivateUsage]
        # The same process is not "the server on another port", nor is this one.
        assert not embedded._is_nats_server(pid, server.port + 1)  # pyright: ignore[reportPrivateUsage]
        assert not embedded._is_nats_server(os.getpid(), server.port)  # pyright: ignore[reportPrivateUsage]
    finally:
        server.stop()
