"""Per-role permissions of deploy/auth/docket-accounts.conf, enforced by a real server.

The server runs deploy/secure/nats.conf (users producer / worker / admin in one
JetStream account). A producer can add tasks and read state but is denied
consuming them and deleting streams; a worker runs tasks but cannot strike.
Denied publishes never reach JetStream: the server answers with a permissions
violation (reported to the client's error callback) and the request times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import api

from docket_nats import Docket, Priority, Worker
from docket_nats._embedded import ServerProcess, free_port
from docket_nats._subjects import LEVELS

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "secure" / "nats.conf"
# The permissions in the config are written for the docket named "docket".
NAME = "docket"
PASSWORDS = {
    "producer": "producer-example-password",
    "worker": "worker-example-password",
    "admin": "admin-example-password",
}

ran: list[int] = []


async def noted(n: int) -> None:
    ran.append(n)


@pytest.fixture
def secure_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(free_port(), tmp_path / "nats", config=CONFIG)
    server.start()
    yield server
    server.stop()


def url(server: ServerProcess, role: str) -> str:
    return f"nats://{role}:{PASSWORDS[role]}@127.0.0.1:{server.port}"


class Violations:
    """Collects the server's permission errors seen by one client."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, error: Exception) -> None:
        self.messages.append(str(error))

    async def wait_for(self, fragment: str) -> str:
        async with asyncio.timeout(5):
            while True:
                for message in self.messages:
                    # nats-py lower-cases the server's -ERR text.
                    lowered = message.lower()
                    if "permissions violation" in lowered and fragment.lower() in lowered:
                        return message
                await asyncio.sleep(0.02)


def role_options(role: str, violations: Violations | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "inbox_prefix": f"_INBOX_{role}",
        # Denied requests get no answer: do not wait (or retry) long for one.
        "request_timeout": 1.0,
        "publish_retry_for": 0.5,
    }
    if violations is not None:
        options["error_cb"] = violations
    return options


@pytest.fixture
async def admin(secure_server: ServerProcess) -> AsyncIterator[Docket]:
    # The admin creates the streams, buckets and the workers' consumer.
    async with Docket(NAME, url=url(secure_server, "admin")) as docket:
        async with Worker(docket):
            pass
        yield docket


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    ran.clear()
    yield
    ran.clear()


async def test_wrong_password_is_refused(secure_server: ServerProcess) -> None:
    wrong = f"nats://producer:guess@127.0.0.1:{secure_server.port}"
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(wrong, allow_reconnect=False, max_reconnect_attempts=0)  # pyright: ignore[reportUnknownMemberType]


async def test_producer_adds_but_cannot_consume_or_delete(
    secure_server: ServerProcess, admin: Docket
) -> None:
    violations = Violations()
    async with Docket(
        NAME,
        url=url(secure_server, "producer"),
        connect_options=role_options("producer", violations),
    ) as producer:
        for n in range(3):
            execution = await producer.add(noted, key=f"task-{n}")(n)
            assert execution.key == f"task-{n}"
        info = await admin.connection.js.stream_info(admin.names.stream)
        assert info.state.messages == 3

        # Fetching from the workers' consumer is denied...
        js = producer.connection.js
        with pytest.raises(nats.errors.TimeoutError):
            await producer.connection.nc.request(
                f"$JS.API.CONSUMER.MSG.NEXT.{producer.names.stream}.{producer.names.consumer}",
                b'{"batch": 1}',
                timeout=1,
            )
        await violations.wait_for("$JS.API.CONSUMER.MSG.NEXT")
        # ...and so is making a consumer of its own to read the queue.
        with pytest.raises(Exception):  # noqa: B017 - no reply: a timeout of some kind
            await js.pull_subscribe(
                producer.names.run_filter, durable="spy", stream=producer.names.stream
            )
        await violations.wait_for("$JS.API.CONSUMER")
        # Deleting the stream is denied.
        with pytest.raises(Exception):  # noqa: B017
            await js.delete_stream(producer.names.stream)
        await violations.wait_for("$JS.API.STREAM.DELETE")

    # Nothing was consumed or deleted: the tasks are all still there.
    info = await admin.connection.js.stream_info(admin.names.stream)
    assert info.state.messages == 3
    consumers = [c.name for c in await admin.connection.js.consumers_info(admin.names.stream)]
    # Only the workers' own (one per priority level): no spy.
    assert sorted(consumers) == sorted(admin.names.level_consumer(level) for level in LEVELS)


async def test_producer_adds_at_every_priority(secure_server: ServerProcess, admin: Docket) -> None:
    violations = Violations()
    async with Docket(
        NAME,
        url=url(secure_server, "producer"),
        connect_options=role_options("producer", violations),
    ) as producer:
        for n, priority in enumerate((Priority.LOW, Priority.NORMAL, Priority.HIGH)):
            execution = await producer.add(noted, key=f"level-{n}", priority=priority)(n)
            assert execution.disposition.name == "SCHEDULED"
    info = await admin.connection.js.stream_info(admin.names.stream, subjects_filter=">")
    assert sorted(info.state.subjects or {}) == sorted(
        admin.names.run(f"level-{n}", level) for n, level in enumerate(sorted(LEVELS))
    )
    assert violations.messages == []


async def test_worker_runs_tasks_but_cannot_strike(
    secure_server: ServerProcess, admin: Docket
) -> None:
    await admin.add(noted)(7)
    violations = Violations()
    async with Docket(
        NAME, url=url(secure_server, "worker"), connect_options=role_options("worker", violations)
    ) as docket:
        docket.register(noted)
        async with Worker(
            docket,
            minimum_check_interval=timedelta(milliseconds=20),
            shutdown_grace=timedelta(seconds=1),
        ) as worker:
            await worker.run_until_finished()
        assert ran == [7]

        with pytest.raises(TimeoutError):
            await docket.strike("noted")
        await violations.wait_for("$KV.docket-docket-strikes")
    # The admin may strike.
    await admin.strike("noted")


async def test_a_producer_that_may_not_migrate_an_old_stream_is_told_so(
    secure_server: ServerProcess, admin: Docket
) -> None:
    names = admin.names
    js = admin.connection.js
    await js.delete_stream(names.stream)
    await js.add_stream(  # pyright: ignore[reportUnknownMemberType]
        api.StreamConfig(  # as a version before priorities made it
            name=names.stream,
            subjects=[names.sched_filter, names.run_filter],
            retention=api.RetentionPolicy.WORK_QUEUE,
            allow_msg_schedules=True,
            allow_msg_ttl=True,
        )
    )
    options = role_options("producer", Violations())
    async with Docket(
        NAME, url=url(secure_server, "producer"), connect_options=options
    ) as producer:
        with pytest.raises(RuntimeError, match="made before priorities"):
            await producer.add(noted, priority=Priority.HIGH)(1)
        normal = await producer.add(noted)(2)  # NORMAL keeps the old subject
        assert normal.disposition.name == "SCHEDULED"
    async with Docket(NAME, url=url(secure_server, "admin")):
        pass  # the admin may update the stream: it adds the levels' subjects
    async with Docket(
        NAME, url=url(secure_server, "producer"), connect_options=options
    ) as producer:
        high = await producer.add(noted, priority=Priority.HIGH)(3)
        assert high.disposition.name == "SCHEDULED"
