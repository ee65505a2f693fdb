"""The dashboard's one view of the docket, shared by every open page.

One dashboard process keeps one set of reads of NATS however many browsers are
open: a single background task (started by the app's lifespan) follows the
executions bucket with one ordered consumer (the last record of every key, then
each change) into an in-memory index, and every `refresh` seconds takes the
docket's counts (`Docket.snapshot(limit=0)`: stream and consumer info, the live
workers) and the dead-letter count. The summary it builds is fanned out to the
open pages' event streams; pages never read NATS for it themselves.

The index answers the executions page (filters, pagination) and the recorded
counts (completed, failed, cancelled, running) without scanning the bucket per
request; its memory is a few hundred bytes per recorded key. A second ordered
consumer follows the running tasks' progress (`progress.>`, dropped when a run
ends). A page that shows executions names their keys when it listens
(`/events?key=...`, up to WATCHED_KEYS): its summaries then also carry those
keys' state, times, history and progress, from this same index.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from .._execution_progress import ProgressRecord, decode_progress
from .._state_records import (
    bucket_name,
    bucket_stream,
    decode_record,
    is_removal,
    transitions,
)
from .._subjects import Names, kv_subject
from .._types import ExecutionState
from ..docket import Docket

logger = logging.getLogger("docket_nats.dashboard")

# The tasks-per-second chart: 30 bars of 30 seconds, the last 15 minutes.
CHART_BARS = 30
CHART_BAR_SECONDS = 30
# How many of the latest changes the overview lists.
RECENT_ROWS = 12
# What a slow page may have waiting before older summaries are dropped for it.
PAGE_BACKLOG = 4
# The most keys one page may follow live (a page of executions is 50).
WATCHED_KEYS = 100
FINISHED = frozenset(
    state.value
    for state in (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED)
)


@dataclass(slots=True)
class Row:
    """One key's latest record, as the executions page lists it."""

    key: str
    state: str
    function: str
    worker: str | None
    when: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    attempt: int
    error: str | None
    # The bucket stream's sequence of this record: a page ignores live news of a
    # key no newer than what it rendered.
    revision: int = 0

    def document(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat(timespec="seconds") if value is not None else None

        return {
            "key": self.key,
            "state": self.state,
            "function": self.function,
            "worker": self.worker,
            "when": moment(self.when),
            "started_at": moment(self.started_at),
            "completed_at": moment(self.completed_at),
            "attempt": self.attempt,
            "error": self.error,
        }

    def details(self, progress: ProgressRecord | None) -> dict[str, Any]:
        """What a page following this key shows of it."""
        steps = transitions(self.state, self.when, self.started_at, self.completed_at)
        running = self.state == ExecutionState.RUNNING.value
        return {
            **self.document(),
            "revision": self.revision,
            "history": [[state, moment.isoformat(timespec="seconds")] for state, moment in steps],
            "progress": (
                {"current": progress.current, "total": progress.total, "message": progress.message}
                if running and progress is not None and progress.current is not None
                else None
            ),
        }


@dataclass(eq=False, slots=True)
class Listener:
    """One open page's event stream, and the keys it follows."""

    queue: asyncio.Queue[str | None]
    keys: tuple[str, ...]
    sent: str = ""


class Live:
    """The index, the counts and the pages listening for them."""

    def __init__(self, docket: Docket, refresh: float = 0.5) -> None:
        self.docket = docket
        self.refresh = refresh
        # Ordered by last change: the newest at the end.
        self.rows: dict[str, Row] = {}
        self.states: Counter[str] = Counter()
        # Completions per whole second (epoch), for the chart.
        self._completions: Counter[int] = Counter()
        self.summary: dict[str, Any] = {}
        self.summary_json = "{}"
        self.loaded = asyncio.Event()
        self.updated = asyncio.Event()
        # The running tasks' latest progress, by key.
        self.progress: dict[str, ProgressRecord] = {}
        self._pages: set[Listener] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        # A start after a stop (or a failed start) reads the bucket afresh.
        self.rows.clear()
        self.states.clear()
        self._completions.clear()
        self.progress.clear()
        self.loaded.clear()
        names: Names = self.docket.names
        js = self.docket.connection.js
        states = await js.subscribe(  # pyright: ignore[reportUnknownMemberType]
            kv_subject(bucket_name(names), "state.>"),
            stream=bucket_stream(names),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            cb=self._on_record,
        )
        self._subscriptions.append(states)
        self._subscriptions.append(
            await js.subscribe(  # pyright: ignore[reportUnknownMemberType]
                kv_subject(bucket_name(names), "progress.>"),
                stream=bucket_stream(names),
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                cb=self._on_progress,
            )
        )
        info = await states.consumer_info()
        if not info.num_pending:
            self.loaded.set()
        self._tasks.append(asyncio.create_task(self._count_forever()))

    async def stop(self) -> None:
        for page in self._pages:
            page.queue.put_nowait(None)  # ends its event stream
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):  # (connection already closed)
                await subscription.unsubscribe()
        self._subscriptions.clear()

    # -- pages listening ----------------------------------------------------------

    def listen(self, keys: tuple[str, ...] = ()) -> Listener:
        """A page's event stream: the summary now and whenever it changes, with
        the state of `keys` (the executions it shows) if it names any."""
        page = Listener(asyncio.Queue(), keys[:WATCHED_KEYS])
        self._send(page, self.summary_json)
        self._pages.add(page)
        return page

    def leave(self, page: Listener) -> None:
        self._pages.discard(page)

    @property
    def listeners(self) -> int:
        return len(self._pages)

    def revision(self, key: str) -> int:
        """The revision of the key's record in the index (0: none)."""
        row = self.rows.get(key)
        return row.revision if row is not None else 0

    def _broadcast(self, text: str) -> None:
        for page in self._pages:
            self._send(page, text)

    def _send(self, page: Listener, summary: str) -> None:
        """The summary, with the page's keys if it follows any, unless already sent."""
        text = summary
        if page.keys:
            followed = {
                key: row.details(self.progress.get(key))
                for key in page.keys
                if (row := self.rows.get(key)) is not None
            }
            keys = json.dumps(followed, separators=(",", ":"))
            text = f'{summary[:-1]}{"," if summary != "{}" else ""}"keys":{keys}}}'
        if text == page.sent:
            return
        page.sent = text
        while page.queue.qsize() >= PAGE_BACKLOG:
            page.queue.get_nowait()  # a page that falls behind needs only the latest
        page.queue.put_nowait(text)

    # -- the executions index -----------------------------------------------------

    async def _on_record(self, message: Msg) -> None:
        key = Names.key_of(message.subject)
        headers: dict[str, str] | None = message.headers  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        record = None
        if message.data and not is_removal(headers):
            try:
                record = decode_record(message.data)
            except msgspec.DecodeError:
                record = None
        old = self.rows.pop(key, None)
        if old is not None:
            self.states[old.state] -= 1
        if record is not None:
            row = Row(
                key=key,
                state=record.state,
                function=record.function,
                worker=record.worker,
                when=record.when,
                started_at=record.started_at,
                completed_at=record.completed_at,
                attempt=record.attempt,
                error=record.error,
                revision=message.metadata.sequence.stream,
            )
            self.rows[key] = row
            self.states[row.state] += 1
            if row.completed_at is not None and row.state != ExecutionState.CANCELLED.value:
                self._completions[int(row.completed_at.timestamp())] += 1
        if not self.loaded.is_set():
            metadata = message.metadata
            if metadata.num_pending == 0:
                self.loaded.set()

    async def _on_progress(self, message: Msg) -> None:
        key = Names.key_of(message.subject)
        headers: dict[str, str] | None = message.headers  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        progress = None if is_removal(headers) else decode_progress(message.data or b"")
        if progress is None:
            self.progress.pop(key, None)
        else:
            self.progress[key] = progress

    def matching(
        self, state: str | None = None, function: str | None = None, prefix: str | None = None
    ) -> Iterator[Row]:
        """The recorded executions that match, the latest change first."""
        for row in reversed(self.rows.values()):
            if state and row.state != state:
                continue
            if function and row.function != function:
                continue
            if prefix and not row.key.startswith(prefix):
                continue
            yield row

    def forget_expired(self) -> None:
        """Drop the finished rows whose record's TTL has passed: the bucket lets
        them go without a delete marker, so the consumer never says so. Rows are
        in order of last change, and a finished record's TTL starts at that
        change, so the walk stops at the first finished row still kept."""
        if self.docket.execution_ttl <= timedelta(0):
            return
        horizon = datetime.now(UTC) - self.docket.execution_ttl
        expired: list[str] = []
        for row in self.rows.values():
            if row.state not in FINISHED:
                continue
            if row.completed_at is None or row.completed_at > horizon:
                break
            expired.append(row.key)
        for key in expired:
            row = self.rows.pop(key)
            self.states[row.state] -= 1

    def functions(self) -> list[str]:
        return sorted({row.function for row in self.rows.values() if row.function})

    # -- the counts -----------------------------------------------------------------

    async def _count_forever(self) -> None:
        # At a fixed rate (not a pause after each read): the reads per second stay
        # the same whatever else the process is doing.
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.count()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away for a moment: keep the last summary
                logger.warning("the dashboard could not read the docket's counts: %s", error)
            due = max(due + self.refresh, loop.time())
            await asyncio.sleep(due - loop.time())

    async def count(self) -> None:
        """Take the counts once and tell the pages if anything changed."""
        self.forget_expired()
        docket = self.docket
        snapshot, dead = await asyncio.gather(
            docket.snapshot(limit=0),
            docket.connection.js.stream_info(docket.names.dead_stream),
        )
        # The snapshot lists nothing at limit 0, so it counts every runnable
        # message as queued; the running ones are those the workers recorded so.
        runnable = snapshot.queued_count + snapshot.running_count
        running = min(self.states[ExecutionState.RUNNING.value], runnable)
        counts = {
            "scheduled": snapshot.scheduled_count,
            "queued": runnable - running,
            "running": running,
            "completed": self.states[ExecutionState.COMPLETED.value],
            "failed": self.states[ExecutionState.FAILED.value],
            "cancelled": self.states[ExecutionState.CANCELLED.value],
            "dead": dead.state.messages,
        }
        workers = [
            {
                "name": worker.name,
                "tasks": sorted(worker.tasks),
                "concurrency": worker.concurrency,
                "running": worker.running,
                "last_seen": worker.last_seen.isoformat(timespec="seconds"),
            }
            for worker in sorted(snapshot.workers, key=lambda worker: worker.name)
        ]
        recent = [row.document() for row in itertools.islice(self.matching(), RECENT_ROWS)]
        summary = {
            "counts": counts,
            "workers": workers,
            "chart": self.chart(),
            "recent": recent,
        }
        text = json.dumps(summary, separators=(",", ":"))
        self.summary = {**summary, "taken": datetime.now(UTC).isoformat(timespec="seconds")}
        self.summary_json = text
        # Each page is sent only what changed for it (the summary or its keys).
        self._broadcast(text)
        self.updated.set()
        self.updated = asyncio.Event()

    def chart(self) -> list[float]:
        """Tasks finished per second, in bars of CHART_BAR_SECONDS, oldest first."""
        now = int(time.time())
        start = now - CHART_BARS * CHART_BAR_SECONDS
        for second in [second for second in self._completions if second < start]:
            del self._completions[second]
        bars = [0] * CHART_BARS
        for second, finished in self._completions.items():
            bar = min(CHART_BARS - 1, (second - start) // CHART_BAR_SECONDS)
            bars[bar] += finished
        return [round(finished / CHART_BAR_SECONDS, 2) for finished in bars]
