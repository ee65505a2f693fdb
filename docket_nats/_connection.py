"""The NATS connection of a Docket and the JetStream assets it needs.

Resolves the docket URL (none → the embedded server, memory://NAME → an ephemeral
one, nats://... or a list → a real deployment), connects with unlimited
reconnection (only the first connection is bounded, so that a wrong URL fails
the Docket's start), and creates or updates the streams idempotently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from ._embedded import acquire_local_server, needs_local_server, release_local_server
from ._publisher import PUBLISH_RETRY_FOR, Publisher
from ._subjects import Names, stream_purge_api

logger = logging.getLogger("docket_nats.connection")

# Dead letters stay for a week: long enough for someone to look, bounded on disk.
DEAD_LETTER_MAX_AGE = 7 * 24 * 3600.0


@dataclass(frozen=True)
class DeadLetterLimits:
    """The bounds of a docket's dead-letter stream (`Docket(max_dead_letters=...)`):
    when one is reached the oldest letter is dropped (discard "old")."""

    max_dead_letters: int = 100_000
    # None: no byte bound. JetStream reserves a stream's max_bytes up front
    # against the server's storage (error 10047 "insufficient storage resources"
    # once enough dockets share a server), so it is opt-in.
    max_dead_letter_bytes: int | None = None


# Options of ours that are not nats.connect's.
_OWN_OPTIONS = frozenset(
    {
        "request_timeout",
        "publish_retry_for",
        "first_connect_timeout",
        "reconnected_cb",
        "disconnected_cb",
        "error_cb",
    }
)
# How long the FIRST connection may take, across every retry, before entering
# the Docket fails (a wrong URL, a server not there). Once connected, a lost
# connection is retried for ever: tasks must survive a server restart.
FIRST_CONNECT_TIMEOUT = 10.0


class NATSUnreachable(NoServersError, ConnectionError):
    """The first connection to NATS did not succeed in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


DocketURL = str | Sequence[str] | None


def work_stream_config(names: Names, replicas: int) -> api.StreamConfig:
    # Unbounded on purpose: message schedules forbid discard "new" (error 10052),
    # and discard "old" drops the oldest message, a live task, without a word.
    return api.StreamConfig(
        name=names.stream,
        subjects=[names.sched_filter, *names.run_filters],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        allow_msg_schedules=True,
        allow_msg_ttl=True,
        allow_rollup_hdrs=True,
        deny_delete=False,
        deny_purge=False,
    )


def dead_stream_config(
    names: Names, replicas: int, limits: DeadLetterLimits = DeadLetterLimits()
) -> api.StreamConfig:
    return api.StreamConfig(
        name=names.dead_stream,
        subjects=[names.dead_filter],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        max_age=DEAD_LETTER_MAX_AGE,
        max_msgs=limits.max_dead_letters,
        max_bytes=limits.max_dead_letter_bytes or -1,
        discard=api.DiscardPolicy.OLD,
    )


_LIMITS = ("max_msgs", "max_bytes", "discard")


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> list[str]:
    """Create the stream, or bring an existing one's limits and subjects to `config`'s (the
    last Docket opened with other limits sets them for everyone). Returns the
    subjects of `config` the stream still lacks (its update was refused)."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
        current = info.config
        wanted: dict[str, Any] = {name: getattr(config, name) for name in _LIMITS}
        wanted = {name: value for name, value in wanted.items() if value is not None}
        # A stream made before priorities lacks the other levels' run subjects:
        # adding them is the whole migration (its consumer stays NORMAL's).
        missing = [
            subject for subject in config.subjects or [] if subject not in (current.subjects or [])
        ]
        if missing:
            wanted["subjects"] = [*(current.subjects or []), *missing]
        if any(getattr(current, name) != value for name, value in wanted.items()):
            for name, value in wanted.items():
                setattr(current, name, value)
            try:
                await js.update_stream(current)  # pyright: ignore[reportUnknownMemberType]
            except Exception as error:  # e.g. a producer without the permission
                logger.warning("could not apply %s to stream %s: %r", wanted, config.name, error)
                return missing
    except NotFoundError:
        try:
            await js.add_stream(config)  # pyright: ignore[reportUnknownMemberType]  (nats-py's **params are untyped)
        except BadRequestError:
            # Another process created it between our look and our create.
            await js.stream_info(config.name)
    return []


async def key_value_bucket(js: JetStreamContext, bucket: str, **config: Any) -> KeyValue:
    """The KV bucket, created with `config` if it does not exist yet; another
    process creating it at the same moment is fine."""
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        try:
            return await js.create_key_value(bucket=bucket, **config)  # pyright: ignore[reportUnknownMemberType]
        except Exception:  # (created concurrently by another process)
            return await js.key_value(bucket)


@dataclass
class Connection:
    """One NATS connection (shared by a Docket and the Workers built on it)."""

    url: DocketURL
    options: Mapping[str, Any] = field(default_factory=dict[str, Any])
    client: Client | None = None
    resolved: list[str] = field(default_factory=list[str])
    _reconnect_listeners: list[Callable[[], None]] = field(default_factory=list[Callable[[], None]])
    _disconnect_listeners: list[Callable[[], Awaitable[None]]] = field(
        default_factory=list[Callable[[], Awaitable[None]]]
    )
    _local: bool = False
    # Work stream subjects a stream made by an older version lacks, because this
    # connection was not allowed to add them (the priority levels' run subjects).
    missing_subjects: frozenset[str] = frozenset()
    # One JetStream context: publish_async keeps its pending futures on it.
    _js: JetStreamContext | None = None
    _publisher: Publisher | None = None

    @property
    def nc(self) -> Client:
        if self.client is None:
            raise RuntimeError("the Docket is not connected: use `async with Docket(...)`")
        return self.client

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("the Docket is not connected: use `async with Docket(...)`")
        return self._js

    @property
    def request_timeout(self) -> float:
        return float(self.options.get("request_timeout", 10.0))

    @property
    def first_connect_timeout(self) -> float:
        return float(self.options.get("first_connect_timeout", FIRST_CONNECT_TIMEOUT))

    @property
    def publish_retry_for(self) -> float:
        return float(self.options.get("publish_retry_for", PUBLISH_RETRY_FOR))

    def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> Awaitable[api.PubAck]:
        """A JetStream publish awaiting its ack; concurrent ones are pipelined.

        Not a coroutine of its own: the publisher's is returned (one frame less
        per add)."""
        if self._publisher is None:
            raise RuntimeError("the Docket is not connected: use `async with Docket(...)`")
        return self._publisher.publish(subject, data, headers)

    async def purge(self, stream: str, subject_filter: str, before: int | None = None) -> int:
        """Remove the messages of `stream` on `subject_filter` (only those whose
        sequence is below `before`, when given); returns how many.

        (nats-py's purge_stream answers only success; the count is in the reply.)
        """
        request: dict[str, Any] = {"filter": subject_filter}
        if before is not None:
            request["seq"] = before  # the server's bound is exclusive
        response = await self.nc.request(
            stream_purge_api(stream),
            json.dumps(request).encode(),
            timeout=self.request_timeout,
        )
        reply: dict[str, Any] = json.loads(response.data)
        if "error" in reply:
            raise RuntimeError(f"could not purge {subject_filter}: {reply['error']}")
        return int(reply.get("purged", 0))

    def standalone_options(self) -> dict[str, Any]:
        """`nats.connect` arguments for a second, independent connection to the
        same servers (another thread's event loop): the caller's connect
        options without the callbacks, which belong to this connection's loop."""
        options = {
            name: value
            for name, value in self.options.items()
            if name not in _OWN_OPTIONS and not name.endswith("_cb")
        }
        return {"servers": list(self.resolved), **options}

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every reconnection; returns a function that unsubscribes."""
        self._reconnect_listeners.append(listener)
        return lambda: self._reconnect_listeners.remove(listener)

    def on_disconnect(self, listener: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Await `listener` when the connection breaks, before nats-py reconnects
        (and subscribes again what is still subscribed); returns a function that
        unsubscribes."""
        self._disconnect_listeners.append(listener)
        return lambda: self._disconnect_listeners.remove(listener)

    async def open(self, client_name: str) -> None:
        await self._resolve_servers()
        errors: list[Exception] = []
        options: dict[str, Any] = {
            "name": client_name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
            "connect_timeout": 5,
            # Tasks must not be lost while reconnecting: buffer publishes.
            "pending_size": 64 * 1024 * 1024,
        }
        options.update({k: v for k, v in self.options.items() if k not in _OWN_OPTIONS})
        options.update(self._callbacks(errors))
        client = Client()
        try:
            await self._first_connect(client, options, errors)
        except BaseException:
            await self._release_local()
            raise
        self.client = client
        self._js = client.jetstream(  # pyright: ignore[reportUnknownMemberType]
            timeout=self.request_timeout
        )
        self._publisher = await Publisher.start(
            client, self.request_timeout, self.publish_retry_for
        )

    async def _resolve_servers(self) -> None:
        if isinstance(self.url, str) or self.url is None:
            single = self.url
            if needs_local_server(single):
                self._local = True
                self.resolved = [await acquire_local_server(single)]
            else:
                assert single is not None
                self.resolved = [part.strip() for part in single.split(",") if part.strip()]
        else:
            self.resolved = list(self.url)

    def _callbacks(self, errors: list[Exception]) -> dict[str, Any]:
        """nats-py's connection callbacks: ours log and notify, then the caller's
        own (given in connect_options) run too, not instead. Errors are kept in
        `errors` for the first connect's message."""
        theirs: dict[str, Any] = {
            name: self.options[name]
            for name in ("reconnected_cb", "disconnected_cb", "error_cb")
            if self.options.get(name) is not None
        }

        async def reconnected() -> None:
            client = self.client
            if client is None:  # closed while the reconnection was under way
                return
            logger.info("reconnected to NATS at %s", client.connected_url)
            for listener in list(self._reconnect_listeners):
                listener()
            if "reconnected_cb" in theirs:
                await theirs["reconnected_cb"]()

        async def disconnected() -> None:
            if self.client is not None:  # not our own close()
                logger.warning("disconnected from NATS; reconnecting")
                for listener in list(self._disconnect_listeners):
                    try:
                        await listener()
                    except Exception:  # never in the way of the reconnection
                        logger.exception("a disconnect listener failed")
            if "disconnected_cb" in theirs:
                await theirs["disconnected_cb"]()

        async def error(exception: Exception) -> None:
            errors.append(exception)
            logger.warning("NATS connection error: %s", exception)
            if "error_cb" in theirs:
                await theirs["error_cb"](exception)

        return {"reconnected_cb": reconnected, "disconnected_cb": disconnected, "error_cb": error}

    async def _first_connect(
        self, client: Client, options: dict[str, Any], errors: list[Exception]
    ) -> None:
        """Connect, giving up after `first_connect_timeout` with the reason (later
        reconnections retry forever)."""
        deadline = asyncio.timeout(self.first_connect_timeout)
        try:
            async with deadline:
                await client.connect(servers=self.resolved, **options)  # pyright: ignore[reportUnknownMemberType]
        except TimeoutError:
            if not deadline.expired():
                raise
            await _abandon(client)
            last = f": {errors[-1]}" if errors else ""
            raise NATSUnreachable(
                f"could not connect to NATS at {', '.join(self.resolved)} within "
                f"{self.first_connect_timeout:g}s (connect_options['first_connect_timeout'])"
                f"{last}"
            ) from None

    async def ensure_streams(
        self, names: Names, replicas: int, limits: DeadLetterLimits = DeadLetterLimits()
    ) -> None:
        js = self.js
        missing, _ = await asyncio.gather(
            ensure_stream(js, work_stream_config(names, replicas)),
            ensure_stream(js, dead_stream_config(names, replicas, limits)),
        )
        self.missing_subjects = frozenset(missing)

    async def close(self) -> None:
        client, self.client = self.client, None
        self._js = None
        self._publisher = None
        if client is not None and not client.is_closed:
            try:
                # Drain delivers what is buffered (acks, publishes) before closing.
                await client.drain()
            except Exception as error:  # the server may be gone: close regardless
                logger.debug("could not drain the NATS connection: %s", error)
                try:
                    await client.close()
                except (Exception, asyncio.CancelledError) as error:
                    # Closing while reconnecting, nats-py 2.16 may flush its buffer
                    # into the dead socket and raise, or leak the CancelledError of
                    # its own reconnection task; only a cancellation of ours counts.
                    task = asyncio.current_task()
                    if isinstance(error, asyncio.CancelledError) and task and task.cancelling():
                        raise
                    logger.warning("closed the NATS connection while disconnected: %r", error)
        await self._release_local()

    async def _release_local(self) -> None:
        if self._local:
            self._local = False
            assert self.url is None or isinstance(self.url, str)
            await release_local_server(self.url)


async def _abandon(client: Client) -> None:
    """Stop a client that never connected (its retries may still be pending)."""
    try:
        await client.close()
    except Exception as error:  # nothing was sent: nothing to lose
        logger.debug("closing an unconnected NATS client: %r", error)
