"""Cron: wall-clock schedules, Vixie keywords, one run per tick across workers."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from docket_nats import CurrentExecution, Docket, Execution, Worker
from docket_nats.dependencies import Cron
from docket_nats.dependencies._cron import VIXIE_KEYWORDS
from docket_nats.worker._automatic import automatic_perpetual


def test_next_time_follows_the_expression() -> None:
    after = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
    assert Cron("*/5 * * * *").next_time(after) == datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
    assert Cron("0 9 * * 1").next_time(after) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    # Six fields: seconds first.
    assert Cron("*/10 * * * * *").next_time(after) == datetime(2026, 3, 2, 10, 7, 40, tzinfo=UTC)
    # Strictly after a tick, so a run at its tick never schedules the same tick.
    tick = datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
    assert Cron("*/5 * * * *").next_time(tick) == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)


def test_vixie_keywords() -> None:
    after = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
    assert Cron("@hourly").next_time(after) == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert Cron("@daily").next_time(after) == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert Cron("@midnight").expression == VIXIE_KEYWORDS["@daily"]
    assert Cron("@weekly").next_time(after) == datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    assert Cron("@monthly").next_time(after) == datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    assert Cron("@yearly").next_time(after) == Cron("@annually").next_time(after)


def test_time_zones_and_daylight_saving() -> None:
    pacific = ZoneInfo("America/Los_Angeles")
    cron = Cron("0 9 * * *", tz=pacific)
    # 09:00 in Los Angeles is 17:00 UTC in winter and 16:00 UTC in summer.
    winter = cron.next_time(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    summer = cron.next_time(datetime(2026, 7, 10, 12, 0, tzinfo=UTC))
    assert winter.astimezone(UTC) == datetime(2026, 1, 10, 17, 0, tzinfo=UTC)
    assert summer.astimezone(UTC) == datetime(2026, 7, 10, 16, 0, tzinfo=UTC)


def test_a_bad_expression_fails_where_it_is_declared() -> None:
    try:
        Cron("not a cron")
    except Exception as error:
        assert "not a cron" in str(error) or error.__class__.__name__ == "CronSimError"
    else:
        raise AssertionError("a bad expression must be refused")


def test_cron_is_automatic_by_default() -> None:
    async def nightly(cron: Cron = Cron("@daily")) -> None: ...

    async def manual(cron: Cron = Cron("@daily", automatic=False)) -> None: ...

    assert automatic_perpetual(nightly) is not None
    assert automatic_perpetual(manual) is None


async def test_one_run_per_tick_across_two_workers(nats_url: str, docket_name: str) -> None:
    ticks: list[datetime] = []

    async def every_second(
        execution: Execution = CurrentExecution(),
        cron: Cron = Cron("* * * * * *"),
    ) -> None:
        ticks.append(execution.when)

    async with (
        Docket(name=docket_name, url=nats_url) as first,
        Docket(name=docket_name, url=nats_url) as second,
    ):
        first.register(every_second)
        second.register(every_second)
        async with Worker(first, name="w1") as w1, Worker(second, name="w2") as w2:
            started = datetime.now(UTC)
            runs = [asyncio.create_task(w1.run_forever()), asyncio.create_task(w2.run_forever())]
            await asyncio.sleep(3.5)  # the measured window itself
            w1.stop()
            w2.stop()
            await asyncio.gather(*runs)
    # Each run is due at a whole second, every tick at most once, and the
    # window of 3.5 s holds 3 or 4 ticks (2 on a loaded machine): one chain, not two.
    assert all(tick.microsecond == 0 for tick in ticks), ticks
    assert len(ticks) == len(set(ticks)), ticks
    assert 2 <= len(ticks) <= 4, ticks
    assert all(tick > started for tick in ticks)
    assert all(
        later - earlier == timedelta(seconds=1) for earlier, later in itertools.pairwise(ticks)
    ), ticks
