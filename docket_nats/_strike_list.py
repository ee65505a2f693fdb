"""The strike list: rules replicated through a KV bucket, checked in memory.

Every Docket (and so every Worker) watches the bucket `docket-N-strikes`: the
watch first delivers the current rules, then a marker, then every change as it
happens. `start()` returns only once the current rules are loaded, so a worker
started after a strike never runs struck work. A strike or restore made here is
applied locally as soon as the server has stored it (so the next add() sees
it) and reaches other processes through their watches within milliseconds.

If the connection drops, the watch is made again from scratch on reconnect and
the rule set replaced by what the bucket holds: restores missed while away are
not missed for good.

`is_struck` is on the hot path of every add() and every run: with no rules it
is two falsy checks; rules are indexed by task name, and single-parameter
equality rules (the common "block these customers") by value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from ._strike_rules import (
    MISSING,
    Check,
    Operator,
    Rule,
    StrikeInstruction,
    arguments_of,
    build_rule,
    compare,
    decode_rule,
)
from ._subjects import kv_subject
from ._types import TaskInvocation

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from ._connection import Connection
    from ._subjects import Names

logger = logging.getLogger("docket_nats.strikes")

# A rule with the conditions still to check once its index look-up found it.
Checked = tuple[Rule, tuple[Check, ...]]

Condition = Callable[[TaskInvocation], bool]
# How long to wait before watching again after the watch failed.
RETRY_BACKOFF_FIRST = 0.1
RETRY_BACKOFF_MAX = 5.0
# Give up loading the rules (and opening the Docket) after this long.
LOAD_TIMEOUT = 30.0
# Remember this many (rule, parameter, type) pairs already warned about.
MAX_WARNINGS_REMEMBERED = 10_000


async def strike_bucket(js: JetStreamContext, names: Names, replicas: int) -> KeyValue:
    """The docket's strikes bucket (created on first use; creation is idempotent)."""
    bucket = names.bucket("strikes")
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        try:
            return await js.create_key_value(  # pyright: ignore[reportUnknownMemberType]
                bucket=bucket, history=1, replicas=replicas
            )
        except BadRequestError:  # another process created it between look and create
            return await js.key_value(bucket)


@dataclass
class Scope:
    """The rules of one task (or of every task), arranged for a quick check."""

    whole: bool = False  # a rule without conditions: the whole task is struck
    # Rules with a `parameter == value` condition, found by one hash look-up
    # per parameter, each with its other conditions (usually none) to check.
    equals: dict[str, dict[Any, list[Checked]]] = field(
        default_factory=dict[str, dict[Any, list[Checked]]]
    )
    # The rules without an equality condition, checked one by one.
    others: list[Checked] = field(default_factory=list[Checked])
    # Every parameter these rules look at: each is read once per check.
    parameters: tuple[str, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Scope | None:
        scope = cls()
        empty = True
        mentioned: set[str] = set()
        for rule in rules:
            empty = False
            if not rule.conditions:
                scope.whole = True
                continue
            mentioned.update(condition.parameter for condition in rule.conditions)
            anchor = next(
                (c for c in rule.conditions if c.operator is Operator.EQUAL and _hashable(c.value)),
                None,
            )
            checks = tuple(
                (c.parameter, compare(c.operator), c.value)
                for c in rule.conditions
                if c is not anchor
            )
            if anchor is None:
                scope.others.append((rule, checks))
            else:
                by_value = scope.equals.setdefault(anchor.parameter, {})
                by_value.setdefault(anchor.value, []).append((rule, checks))
        if empty:
            return None
        scope.parameters = tuple(sorted(mentioned))
        return scope


class StrikeList:
    """The rules every Docket and Worker consults before adding or running a task."""

    def __init__(self, names: Names, replicas: int = 1) -> None:
        self.names = names
        self.replicas = replicas
        self._conditions: list[Condition] = []  # in-process ones (Worker.run_at_most)
        self._rules: dict[str, Rule] = {}  # by KV key
        self._by_function: dict[str | None, dict[str, Rule]] = {}  # the same, by task
        self._revisions: dict[str, int] = {}  # the newest revision applied, per key
        self._scopes: dict[str | None, Scope] = {}  # by task name; None: every task
        self._listeners: list[Callable[[], None]] = []
        self._warned: set[tuple[str, str, str]] = set()
        self._connection: Connection | None = None
        self._bucket: KeyValue | None = None
        self._follower: asyncio.Task[None] | None = None
        self._resync = asyncio.Event()
        self._stop_listening: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self, js: JetStreamContext, connection: Connection | None = None) -> None:
        """Load the current rules; afterwards keep them current (returns once loaded)."""
        self._bucket = await strike_bucket(js, self.names, self.replicas)
        self._connection = connection
        if connection is not None:
            self._stop_listening = connection.on_reconnect(self._resync.set)
        watcher = await self._load()
        self._follower = asyncio.create_task(
            self._follow(watcher), name=f"docket-nats strikes {self.names.docket}"
        )

    async def stop(self) -> None:
        """Stop following the rules."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            try:
                await follower
            except asyncio.CancelledError:
                pass

    # -- writing ---------------------------------------------------------------

    async def strike(
        self,
        function: str | None,
        task: Callable[..., Any] | None,
        parameter: str | None,
        operator: Operator | str,
        value: Any,
        conditions: Mapping[str, Any],
    ) -> None:
        """Store a rule (validated first) and apply it here at once."""
        key, data = build_rule(function, task, parameter, operator, value, conditions)
        ack = await self._write(key, data, {})
        self._apply(key, ack, data)

    async def restore(
        self,
        function: str | None,
        task: Callable[..., Any] | None,
        parameter: str | None,
        operator: Operator | str,
        value: Any,
        conditions: Mapping[str, Any],
    ) -> None:
        """Delete the rule these arguments name (nothing happens if there is none)."""
        key, _ = build_rule(function, task, parameter, operator, value, conditions)
        ack = await self._write(key, b"", {KV_OP: KV_DEL})
        self._apply(key, ack, None)

    async def send_instruction(self, instruction: StrikeInstruction) -> None:
        """docket's form of `strike` / `restore`: one `Strike` or `Restore` rule."""
        send = self.strike if instruction.direction == "strike" else self.restore
        await send(
            instruction.function,
            None,
            instruction.parameter,
            instruction.operator,
            instruction.value,
            {},
        )

    async def _write(self, key: str, data: bytes, headers: dict[str, str]) -> int:
        if self._connection is None or self._bucket is None:
            raise RuntimeError("the Docket is not connected: use `async with Docket(...)`")
        subject = kv_subject(self.names.bucket("strikes"), key)
        return (await self._connection.publish(subject, data, headers)).seq

    # -- reading ---------------------------------------------------------------

    def rules(self) -> list[Rule]:
        """The rules in effect, sorted by task then text."""
        return sorted(self._rules.values(), key=lambda rule: (rule.function or "", str(rule)))

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every change of the rules; returns its unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def add_condition(self, condition: Condition) -> None:
        self._conditions.append(condition)

    def remove_condition(self, condition: Condition) -> None:
        self._conditions.remove(condition)

    def is_struck(self, execution: TaskInvocation) -> bool:
        if self._conditions and any(condition(execution) for condition in self._conditions):
            return True
        if not self._scopes:
            return False
        scope = self._scopes.get(execution.function_name)
        everywhere = self._scopes.get(None)
        if scope is None and everywhere is None:
            return False
        if scope is not None and scope.whole:
            return True
        arguments = arguments_of(execution.function)
        args, kwargs = execution.args, execution.kwargs
        for each in (scope, everywhere):
            if each is not None:
                values = arguments.read(args, kwargs, each.parameters)
                if self._matches(each, values):
                    return True
        return False

    def is_stricken(self, target: TaskInvocation | Mapping[str, Any]) -> bool:
        """docket's name: an Execution, or a mapping of parameters checked against
        the rules for every task."""
        if not isinstance(target, Mapping):
            return self.is_struck(target)
        everywhere = self._scopes.get(None)
        if everywhere is None:
            return False
        return self._matches(
            everywhere, {p: _plain(target.get(p, MISSING)) for p in everywhere.parameters}
        )

    def _matches(self, scope: Scope, values: Mapping[str, Any]) -> bool:
        """Whether a rule of `scope` holds for these arguments (MISSING: not given)."""
        for parameter, by_value in scope.equals.items():
            found = values[parameter]
            if found is MISSING:
                continue
            try:
                candidates = by_value.get(found)
            except TypeError:  # unhashable: equal to none of the (hashable) values
                continue
            if candidates:
                for each in candidates:
                    if self._holds(each, values):
                        return True
        for each in scope.others:
            if self._holds(each, values):
                return True
        return False

    def _holds(self, checked: Checked, values: Mapping[str, Any]) -> bool:
        rule, checks = checked
        for parameter, comparison, value in checks:
            found = values[parameter]
            if found is MISSING:
                return False
            try:
                if not comparison(found, value):
                    return False
            except Exception as error:  # types that do not compare: no match, say so once
                self._warn(rule, parameter, found, error)
                return False
        return True

    def _warn(self, rule: Rule, parameter: str, found: Any, error: Exception) -> None:
        seen = (rule.key, parameter, type(found).__qualname__)
        if seen in self._warned:
            return
        if len(self._warned) < MAX_WARNINGS_REMEMBERED:
            self._warned.add(seen)
        logger.warning(
            "strike rule %s cannot compare %s=%r (%s): treated as not matching (%s)",
            rule,
            parameter,
            found,
            type(found).__name__,
            error,
        )

    # -- applying changes --------------------------------------------------------

    def _apply(self, key: str, revision: int, data: bytes | None) -> None:
        """One change (data None: deleted), unless a newer one was applied already."""
        if revision <= self._revisions.get(key, 0):
            return
        self._revisions[key] = revision
        changed, function = self._set(key, data)
        if changed:
            self._reindex({function})
            self._notify()

    def _set(self, key: str, data: bytes | None, quiet: bool = False) -> tuple[bool, str | None]:
        """Update one rule: (whether the rules changed, the task it concerns)."""
        old = self._rules.pop(key, None)
        if old is not None:
            self._by_function[old.function].pop(key, None)
        if data:
            try:
                rule = decode_rule(key, data)
            except Exception as error:  # someone else's bytes must not stop the watch
                logger.warning("ignoring an unreadable strike rule %r: %s", key, error)
            else:
                self._rules[key] = rule
                self._by_function.setdefault(rule.function, {})[key] = rule
                if old is None and not quiet:
                    logger.info("striking %s", rule)
                return old != rule, rule.function
        if old is None:
            return False, None
        if not quiet:
            logger.info("restoring %s", old)
        return True, old.function

    def _reindex(self, functions: set[str | None]) -> None:
        for function in functions:
            scope = Scope.of(self._by_function.get(function, {}).values())
            if scope is None:
                self._by_function.pop(function, None)
                self._scopes.pop(function, None)
            else:
                self._scopes[function] = scope

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                logger.exception("a strike list listener failed")

    def _replace_all(self, snapshot: dict[str, tuple[int, bytes | None]]) -> None:
        """Make the rule set what a fresh watch found (the bucket's current state).

        A key absent from the snapshot is gone from the bucket, unless it was
        written here after the snapshot was taken (its revision is newer).
        """
        newest = max((revision for revision, _ in snapshot.values()), default=0)
        for key, revision in list(self._revisions.items()):
            if key not in snapshot and revision <= newest:
                self._revisions.pop(key)
                snapshot[key] = (revision + 1, None)
        touched: set[str | None] = set()
        for key, (revision, data) in snapshot.items():
            if revision < self._revisions.get(key, 0):
                continue
            self._revisions[key] = revision
            changed, function = self._set(key, data, quiet=True)
            if changed:
                touched.add(function)
        self._reindex(touched)
        logger.debug("%d strike rules in effect in %s", len(self._rules), self.names.docket)
        if touched:
            self._notify()

    # -- watching ----------------------------------------------------------------

    async def _load(self) -> KeyValue.KeyWatcher:
        """Watch the bucket and apply its current state; the watcher, for what follows."""
        assert self._bucket is not None
        self._resync.clear()
        # nats-py's "initial state done" marker can come before the entries (its
        # consumer-info check races the first delivery), so the end of the
        # current state is the entry delivered with nothing pending behind it;
        # the marker counts only when the bucket held nothing before the watch.
        status = await self._bucket.status()
        was_empty = not status.values
        watcher = await self._bucket.watchall()  # pyright: ignore[reportUnknownMemberType]
        snapshot: dict[str, tuple[int, bytes | None]] = {}
        try:
            async with asyncio.timeout(LOAD_TIMEOUT):
                async for entry in watcher:
                    if entry is None:
                        if was_empty or (not snapshot and not (await self._bucket.status()).values):
                            break
                        continue
                    snapshot[entry.key] = (entry.revision or 0, _value_of(entry))
                    if entry.delta == 0:
                        break
        except BaseException:
            await _quietly_stop(watcher)
            raise
        self._replace_all(snapshot)
        return watcher

    async def _follow(self, watcher: KeyValue.KeyWatcher | None) -> None:
        """Apply live changes; watch again after a reconnect or a failure."""
        backoff = RETRY_BACKOFF_FIRST
        while True:
            try:
                if watcher is None:
                    watcher = await self._load()
                    backoff = RETRY_BACKOFF_FIRST
                await self._apply_until_resync(watcher)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("watching the strike rules failed (%s); watching again", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX)
            finally:
                if watcher is not None:
                    await _quietly_stop(watcher)
                    watcher = None

    async def _apply_until_resync(self, watcher: KeyValue.KeyWatcher) -> None:
        resync = asyncio.ensure_future(self._resync.wait())
        try:
            while True:
                update = asyncio.ensure_future(watcher.updates(timeout=None))  # pyright: ignore[reportArgumentType]
                done, _ = await asyncio.wait({update, resync}, return_when=asyncio.FIRST_COMPLETED)
                if update not in done:
                    update.cancel()
                    return  # reconnected: watch again from the bucket's state
                entry = update.result()
                if entry is None:
                    continue
                if not isinstance(entry, KeyValue.Entry):  # the watcher was stopped
                    return
                self._apply(entry.key, entry.revision or 0, _value_of(entry))
        finally:
            resync.cancel()


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _plain(argument: Any) -> Any:
    """Rules hold enum members by their value: compare an enum argument's value."""
    return argument.value if isinstance(argument, Enum) else argument


def _value_of(entry: KeyValue.Entry) -> bytes | None:
    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
        return None
    return entry.value


async def _quietly_stop(watcher: KeyValue.KeyWatcher) -> None:
    try:
        await watcher.stop()
    except Exception as error:  # disconnected: the server drops the consumer itself
        logger.debug("could not stop the strike watch: %s", error)
