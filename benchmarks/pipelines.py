"""Fan-out / fan-in: `docket.group(..., then=...)` against a counter per group by hand.

    python benchmarks/pipelines.py [--groups 50] [--members 1000] [--small-groups 300]
        [--concurrency 10] [--url nats://...]

Without --url it starts a nats-server of its own (file storage, 127.0.0.1, a
temporary directory). One worker runs in this process, so member ends and callback
starts are read from the same `perf_counter()`.

1. Fan-in latency: `--groups` groups of `--members` no-op members, one group at a
   time; latency = the callback's start - the last member's end (the moment its
   function returned).
2. Throughput: `--small-groups` groups of 10 no-op members added as fast as one
   producer can (each group's add awaited, 20 in flight); groups/s = groups whose
   callback ran / (last callback - first add).

Both for `docket.group` and for the same pipeline written by hand: each member
ends by incrementing a KV counter of its group (read + compare-and-set, retried on
conflict) and the member that brings it to the total adds the callback. The hand
version is what users write today; it is not crash-safe (a worker killed between
its increment and its ack counts the member twice on redelivery).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from docket_nats import CurrentDocket, Docket, MemberOutcome, Worker
from docket_nats._embedded import ServerProcess, free_port

last_end: dict[str, float] = defaultdict(float)
callback_start: dict[str, float] = {}
callback_done: dict[str, asyncio.Event] = defaultdict(asyncio.Event)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def member(group: str) -> None:
    last_end[group] = max(last_end[group], time.perf_counter())


async def then(group: str, outcomes: list[MemberOutcome]) -> None:
    callback_start[group] = time.perf_counter()
    callback_done[group].set()


counters: list[KeyValue] = []  # the counters' bucket, opened once


async def counted_member(group: str, total: int, docket: Docket = CurrentDocket()) -> None:
    last_end[group] = max(last_end[group], time.perf_counter())
    kv = counters[0]
    while True:
        try:
            entry = await kv.get(group)
            count, revision = int(entry.value or b"0"), entry.revision or 0
        except Exception:  # (no counter yet)
            count, revision = 0, 0
        try:
            if revision:
                await kv.update(group, str(count + 1).encode(), last=revision)
            else:
                await kv.create(group, b"1")
            break
        except KeyWrongLastSequenceError:
            continue
        except Exception:  # create lost to another member's create
            continue
    if count + 1 == total:
        await docket.add(hand_then, key=f"then-{group}")(group)


async def hand_then(group: str) -> None:
    callback_start[group] = time.perf_counter()
    callback_done[group].set()


async def fan_in(docket: Docket, groups: int, members: int, by_hand: bool) -> list[float]:
    latencies: list[float] = []
    for index in range(groups):
        group = f"{'hand' if by_hand else 'group'}-{members}-{index}"
        if by_hand:
            await docket.add_many(
                [docket.call(counted_member)(group, members) for _ in range(members)]
            )
        else:
            await docket.group(
                [docket.call(member)(group) for _ in range(members)],
                then=docket.call(then)(group),
                key=group,
            )
        await asyncio.wait_for(callback_done[group].wait(), 120)
        latencies.append((callback_start[group] - last_end[group]) * 1000)
    return latencies


async def throughput(docket: Docket, groups: int, by_hand: bool) -> float:
    names = [f"{'hand' if by_hand else 'group'}-small-{index}" for index in range(groups)]
    in_flight = asyncio.Semaphore(20)
    began = time.perf_counter()

    async def add(group: str) -> None:
        async with in_flight:
            if by_hand:
                await docket.add_many([docket.call(counted_member)(group, 10) for _ in range(10)])
            else:
                await docket.group(
                    [docket.call(member)(group) for _ in range(10)],
                    then=docket.call(then)(group),
                    key=group,
                )

    await asyncio.gather(*(add(group) for group in names))
    for group in names:
        await asyncio.wait_for(callback_done[group].wait(), 300)
    finished = max(callback_start[group] for group in names)
    return groups / (finished - began)


def summary(latencies: list[float]) -> str:
    return (
        f"p50 {statistics.median(latencies):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms, "
        f"max {max(latencies):.2f} ms (n={len(latencies)})"
    )


async def measure(url: str, arguments: argparse.Namespace) -> None:
    async with Docket(name=f"bench-pipelines-{int(time.time())}", url=url) as docket:
        counters.append(
            await docket.connection.js.create_key_value(  # pyright: ignore[reportUnknownMemberType]
                bucket=f"bench-{docket.name}", history=1
            )
        )
        for function in (member, then, counted_member, hand_then):
            docket.register(function)
        async with Worker(
            docket, concurrency=arguments.concurrency, schedule_automatic_tasks=False
        ) as worker:
            run = asyncio.create_task(worker.run_forever())
            # Warm-up: connections, buckets, consumers, caches.
            await fan_in(docket, 2, 100, by_hand=False)
            await fan_in(docket, 2, 100, by_hand=True)
            for by_hand in (False, True):
                label = "by hand (counter per group)" if by_hand else "docket.group"
                latencies = await fan_in(docket, arguments.groups, arguments.members, by_hand)
                print(f"{label}: last member end -> callback start: {summary(latencies)}")
            for by_hand in (False, True):
                label = "by hand (counter per group)" if by_hand else "docket.group"
                rate = await throughput(docket, arguments.small_groups, by_hand)
                groups = arguments.small_groups
                print(f"{label}: groups of 10, {groups} groups: {rate:.1f} groups/s")
            worker.stop()
            await run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--small-groups", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url", default=None)
    arguments = parser.parse_args()
    if arguments.url:
        asyncio.run(measure(arguments.url, arguments))
        return
    with tempfile.TemporaryDirectory() as directory:
        server = ServerProcess(free_port(), Path(directory))
        server.start()
        try:
            asyncio.run(measure(server.url, arguments))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
