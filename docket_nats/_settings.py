"""Checks of Docket and Worker settings, made when they are built.

A setting that cannot work fails at once with a message naming it, rather than
a worker that starts and then runs nothing (concurrency 0), spins (a negative
interval) or waits for a Redis server that will never answer. Messages follow
docket's where it has one ("message_batch must be at least 1, got 0").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from ._embedded import MEMORY_SCHEME


class InvalidSetting(ValueError):
    """A Docket or Worker setting that cannot work; the message names it."""


class InvalidSettingType(TypeError):
    """A Docket or Worker setting of the wrong type; the message names it."""


# What nats-py connects to (memory://NAME, an ephemeral embedded server, is ours).
NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})


def at_least_one(setting: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettingType(f"{setting} must be an int, got {type(value).__name__}")
    if value < 1:
        raise InvalidSetting(f"{setting} must be at least 1, got {value}")


def _duration(setting: str, value: object) -> float:
    if not isinstance(value, timedelta):
        raise InvalidSettingType(
            f"{setting} must be a datetime.timedelta, got {type(value).__name__} "
            f"(e.g. timedelta(seconds={value!r}))"
        )
    return value.total_seconds()


def positive_duration(setting: str, value: timedelta) -> None:
    seconds = _duration(setting, value)
    if seconds <= 0:
        raise InvalidSetting(f"{setting} must be longer than 0, got {seconds:g}s")


def non_negative_duration(setting: str, value: timedelta) -> None:
    seconds = _duration(setting, value)
    if seconds < 0:
        raise InvalidSetting(f"{setting} must not be negative, got {seconds:g}s")


def nats_url(url: str | Sequence[str] | None) -> None:
    """A URL nats-py can connect to, memory://NAME, or None (the embedded server).

    Catches the docket user's Redis URL carried over unchanged, which would
    otherwise be retried as a NATS server that never answers."""
    if url is None:
        return
    servers = [url] if isinstance(url, str) else list(url)
    if isinstance(url, str):
        if url.startswith(MEMORY_SCHEME):
            return
        servers = [part.strip() for part in url.split(",")]
    if not servers or not all(servers):
        raise InvalidSetting(f"url {url!r} names no server: use nats://host:port")
    for server in servers:
        scheme, separator, _ = server.partition("://")
        if separator and scheme.lower() not in NATS_SCHEMES:
            raise InvalidSetting(
                f"url {server!r} is not a NATS server URL ({scheme}://): use "
                "nats://host:port (or tls://, ws://, wss://), memory://NAME for an "
                "ephemeral server, or None for the embedded one"
            )


def worker_settings(
    *,
    concurrency: int,
    redelivery_timeout: timedelta,
    shutdown_grace: timedelta,
    intervals: dict[str, timedelta],
    message_batch: int,
    max_deliveries: int,
    prefetch: int | None,
) -> int:
    """Check a Worker's settings; returns its prefetch (by default its concurrency)."""
    at_least_one("concurrency", concurrency)
    positive_duration("redelivery_timeout", redelivery_timeout)
    non_negative_duration("shutdown_grace", shutdown_grace)
    for setting, interval in intervals.items():
        non_negative_duration(setting, interval)
    at_least_one("message_batch", message_batch)  # docket's check
    at_least_one("max_deliveries", max_deliveries)
    if prefetch is None:
        return concurrency
    if prefetch < 0:
        raise InvalidSetting(f"prefetch must not be negative, got {prefetch}")
    return prefetch
