"""Every subject, stream, consumer and bucket name of a docket, in one place.

Per docket name N (see docs/architecture.md):

    docket.N.sched.<key>   future tasks (NATS message schedules fire them)   stream DOCKET_N
    docket.N.run.<key>     runnable tasks, pulled by the workers' consumer    stream DOCKET_N
    docket.N.run-high.<key>, docket.N.run-low.<key>
                           runnable tasks of priority HIGH / LOW, each level with
                           its own consumer (workers-high, workers-low)
    docket.N.dead.<key>    what can never run, with the reason                stream DOCKET_N_DEAD
    docket.N.cancel.<key>  core NATS: an empty body cancels the running task and
                           held copies (docket.cancel); a stream sequence voids
                           held copies older than it (docket.replace)
    docket.N.ack-wait      core NATS: the ack wait a starting worker is about to set

Both task states of one key share the wildcard `docket.N.*.<key>`, which is what
makes one publish enough to honour idempotent keys (expected last subject sequence).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

# -- Headers ---------------------------------------------------------------------
# Ours: a scheduled task's due time (epoch seconds), for the worker to hold a task
# that fires early (see worker/_early_hold.py).
DOCKET_WHEN = "Docket-When"
# Ours: a group member's group key and index, and the group a callback belongs to
# (see _groups.py); a Retry's successor carries them over.
GROUP = "Docket-Group"
GROUP_MEMBER = "Docket-Group-Member"
GROUP_THEN = "Docket-Group-Then"
GROUP_THEN_INDEX = "Docket-Group-Then-Index"
GROUP_HEADERS = (GROUP, GROUP_MEMBER, GROUP_THEN, GROUP_THEN_INDEX)
# JetStream's (docs/nats-facts.md §3, §5).
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
SCHEDULE = "Nats-Schedule"
SCHEDULE_TARGET = "Nats-Schedule-Target"
TTL = "Nats-TTL"
ROLLUP = "Nats-Rollup"
KV_OPERATION = "KV-Operation"
# On the server's status messages (pull requests, no responders).
STATUS = "Status"
PENDING_MESSAGES = "Nats-Pending-Messages"
# On direct get replies: the message's subject; at the end of a batch, what is left.
NATS_SUBJECT = "Nats-Subject"
NUM_PENDING = "Nats-Num-Pending"
LAST_SEQUENCE = "Nats-Last-Sequence"

# -- Error codes -------------------------------------------------------------------
# A publish whose expected last subject sequence did not hold: the key is taken,
# or a compare-and-set lost.
WRONG_LAST_SEQUENCE = 10071

# The server refuses per-message TTLs under one second.
MINIMUM_TTL = 1.0


def ttl_value(seconds: float) -> str:
    """A `Nats-TTL` value: at least 1 s; milliseconds are accepted above that."""
    return f"{max(MINIMUM_TTL * 1000, math.ceil(seconds * 1000)):.0f}ms"


def kv_stream(bucket: str) -> str:
    """The stream behind a KV bucket."""
    return f"KV_{bucket}"


KV_PREFIX = "$KV."


def kv_subject(bucket: str, key: str) -> str:
    """The subject of a KV key (raw publishes carry headers nats-py's KV API lacks)."""
    return f"{KV_PREFIX}{bucket}.{key}"


def stream_purge_api(stream: str) -> str:
    return f"$JS.API.STREAM.PURGE.{stream}"


def direct_get_api(stream: str) -> str:
    """Where a direct get (one message, or a batch) of a stream with allow_direct goes."""
    return f"$JS.API.DIRECT.GET.{stream}"


def consumer_next_api(stream: str, consumer: str) -> str:
    """Where a pull request for the next messages of a consumer goes."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"


# -- Priority levels ---------------------------------------------------------------
# One run subject (and one pull consumer) per level: JetStream delivers a consumer's
# messages in stream order, so a level sharing a subject with another would queue
# behind its backlog. NORMAL keeps the names of the version before priorities, so
# an existing stream and consumer carry on as its level.
LOW_LEVEL, NORMAL_LEVEL, HIGH_LEVEL = 0, 1, 2
LEVELS: tuple[int, ...] = (
    HIGH_LEVEL,
    NORMAL_LEVEL,
    LOW_LEVEL,
)  # the order a worker prefers them in
_RUN_TOKEN = {LOW_LEVEL: "run-low", NORMAL_LEVEL: "run", HIGH_LEVEL: "run-high"}
_CONSUMER_SUFFIX = {LOW_LEVEL: "-low", NORMAL_LEVEL: "", HIGH_LEVEL: "-high"}


_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_ALL_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def validate_docket_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"invalid docket name {name!r}: use 1-64 letters, digits, '_' or '-' "
            "(it becomes part of NATS subjects, stream and bucket names)"
        )
    return name


def encode_key(key: str) -> str:
    """A task key as one subject token that is also a valid KV key.

    Letters, digits, '_' and '-' stay as they are (so subjects stay readable);
    every other byte of the UTF-8 form becomes '=XX'.
    """
    if _ALL_PLAIN.fullmatch(key):
        return key
    if not key:
        return "="
    return "".join(
        character if character in _PLAIN else "".join(f"={b:02X}" for b in character.encode())
        for character in key
    )


def decode_key(token: str) -> str:
    """The key `encode_key` made `token` from; a token it cannot have made is
    returned as it is (a message someone else published must not crash a worker)."""
    if "=" not in token:
        return token
    if token == "=":
        return ""
    raw = bytearray()
    index = 0
    try:
        while index < len(token):
            if token[index] == "=":
                escaped = token[index + 1 : index + 3]
                if len(escaped) != 2:
                    return token
                raw.append(int(escaped, 16))
                index += 3
            else:
                raw.extend(token[index].encode())
                index += 1
        return raw.decode()
    except ValueError:  # not hex, or not UTF-8
        return token


@dataclass(frozen=True)
class Names:
    """The NATS names of one docket."""

    docket: str

    def __post_init__(self) -> None:
        validate_docket_name(self.docket)

    @cached_property  # every subject of every add starts with it
    def prefix(self) -> str:
        return f"docket.{self.docket}"

    @property
    def stream(self) -> str:
        return f"DOCKET_{self.docket}"

    @property
    def dead_stream(self) -> str:
        return f"DOCKET_{self.docket}_DEAD"

    @property
    def consumer(self) -> str:
        """The NORMAL level's consumer (the one consumer before priorities)."""
        return "workers"

    def level_consumer(self, level: int) -> str:
        return f"workers{_CONSUMER_SUFFIX[level]}"

    @property
    def run_filter(self) -> str:
        """The NORMAL level's runnable tasks."""
        return f"{self.prefix}.run.>"

    def level_filter(self, level: int) -> str:
        return f"{self.prefix}.{_RUN_TOKEN[level]}.>"

    @property
    def run_filters(self) -> list[str]:
        """The runnable tasks of every level, highest first."""
        return [self.level_filter(level) for level in LEVELS]

    @cached_property  # level_of runs a few times per task on the worker
    def _level_prefixes(self) -> tuple[tuple[str, int], ...]:
        return tuple(
            (f"{self.prefix}.{_RUN_TOKEN[level]}.", level)
            for level in (HIGH_LEVEL, LOW_LEVEL)  # NORMAL is what is left
        )

    def level_of(self, subject: str) -> int:
        """The priority level of a run subject (NORMAL for any other subject)."""
        for prefix, level in self._level_prefixes:
            if subject.startswith(prefix):
                return level
        return NORMAL_LEVEL

    @property
    def sched_filter(self) -> str:
        return f"{self.prefix}.sched.>"

    @property
    def dead_filter(self) -> str:
        return f"{self.prefix}.dead.>"

    @property
    def cancel_filter(self) -> str:
        return f"{self.prefix}.cancel.>"

    def run(self, key: str, level: int = NORMAL_LEVEL) -> str:
        return f"{self.prefix}.{_RUN_TOKEN[level]}.{encode_key(key)}"

    def sched(self, key: str) -> str:
        return f"{self.prefix}.sched.{encode_key(key)}"

    def any_state(self, key: str) -> str:
        """Both the scheduled and the runnable subject of a key."""
        return f"{self.prefix}.*.{encode_key(key)}"

    def dead(self, key: str) -> str:
        return f"{self.prefix}.dead.{encode_key(key)}"

    def cancel(self, key: str) -> str:
        return f"{self.prefix}.cancel.{encode_key(key)}"

    @property
    def ack_wait_notice(self) -> str:
        """Core NATS: a starting worker announces the ack wait it is about to set on
        the shared consumer, so running workers renew their leases by it at once."""
        return f"{self.prefix}.ack-wait"

    @property
    def contact_probe(self) -> str:
        """Core NATS, listened to by nobody: a worker's request here is answered by
        the server itself (no responders), a round trip proving contact."""
        return f"{self.prefix}.contact"

    def bucket(self, purpose: str) -> str:
        """A KV bucket of this docket: strikes, workers, state, results, ..."""
        return f"docket-{self.docket}-{purpose}"

    @staticmethod
    def key_of(subject: str) -> str:
        """The task key a subject names (its last token)."""
        return decode_key(subject.rsplit(".", 1)[-1])
