"""A docket on a three-node JetStream cluster (R3) survives losing a node.

Real nats-server processes on 127.0.0.1 (deploy/local_cluster.py). The hard case is
SIGKILL of the work stream's leader while tasks are being added and drained: the
stream is unwritable until a new leader is elected (~4 s), publishes in flight
get no ack, acks of running tasks are lost. Producers ride it out on the
publisher's retry (with Nats-Msg-Id dedup), workers on redelivery; the outcome
must be at-least-once: every task runs, duplicates are counted and reported.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import nats
import pytest
from nats.js.errors import APIError

from deploy.local_cluster import Cluster, stream_leader, wait_for_jetstream
from docket_nats import CurrentWorker, Docket, Worker
from docket_nats._embedded import nats_server_binary

TASKS = 5_000
CHUNK = 100
KILL_AFTER = 1_500

runs: Counter[int] = Counter()


async def record(n: int) -> None:
    runs[n] += 1


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster")
    cluster.start()
    try:
        await cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def fresh_runs() -> Iterator[None]:
    runs.clear()
    yield
    runs.clear()


def cluster_worker(docket: Docket) -> Worker:
    return Worker(
        docket,
        concurrency=50,
        # Acks lost with the leader come back after this; short keeps the test fast.
        redelivery_timeout=timedelta(seconds=3),
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=2),
    )


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_every_asset_is_replicated(cluster: Cluster, docket_name: str) -> None:
    async with Docket(docket_name, url=cluster.urls, replicas=3) as docket:
        async with cluster_worker(docket):
            js = docket.connection.js
            names = docket.names
            streams = [
                names.stream,
                names.dead_stream,
                f"KV_{names.bucket('strikes')}",
                f"KV_{names.bucket('workers')}",
            ]
            for stream in streams:
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3, stream
                assert info.cluster is not None
                assert len(info.cluster.replicas or []) == 2, stream
            consumer = await js.consumer_info(names.stream, names.consumer)
            assert consumer.config.num_replicas == 3


async def test_comma_separated_url_fails_over_to_another_node(
    cluster: Cluster, docket_name: str
) -> None:
    # A publish written into the dead socket waits out its ack timeout before the
    # retry: keep that short here.
    options = {"request_timeout": 2.0}
    async with Docket(docket_name, url=cluster.url, replicas=3, connect_options=options) as docket:
        docket.register(record)
        connected = docket.connection.nc.connected_url
        assert connected is not None
        victim = next(n for n, node in cluster.nodes.items() if node.port == connected.port)
        async with cluster_worker(docket) as worker:
            cluster.kill(victim)
            # Reconnection and the add's retry happen underneath.
            await docket.add(record)(1)
            await worker.run_until_finished()
        assert docket.connection.nc.connected_url is not None
        assert docket.connection.nc.connected_url.port != connected.port
    assert runs == {1: 1}


async def test_killing_the_stream_leader_loses_no_task(cluster: Cluster, docket_name: str) -> None:
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(
            Docket(docket_name, url=cluster.urls, replicas=3)
        )
        workers: list[Worker] = []
        for urls in (cluster.urls, list(reversed(cluster.urls))):
            # Each worker on its own Docket, i.e. its own connection.
            docket = await stack.enter_async_context(Docket(docket_name, url=urls, replicas=3))
            docket.register(record)
            workers.append(await stack.enter_async_context(cluster_worker(docket)))
        running = [asyncio.create_task(worker.run_forever()) for worker in workers]

        leader = await stream_leader(cluster.urls, producer.names.stream)
        add = producer.add(record)
        started = time.monotonic()
        killed_at: float | None = None
        for start in range(0, TASKS, CHUNK):
            if killed_at is None and start >= KILL_AFTER:
                cluster.kill(leader)
                killed_at = time.monotonic() - started
            await asyncio.gather(*(add(n) for n in range(start, start + CHUNK)))
        added = time.monotonic() - started

        await wait_until(lambda: len(runs) == TASKS, 40, f"all {TASKS} tasks to run")
        drained = time.monotonic() - started
        for worker in workers:
            worker.stop()
        await asyncio.gather(*running)

    new_leader = "?"
    try:
        new_leader = await stream_leader(
            [cluster.nodes[n].url for n in cluster.alive()], producer.names.stream
        )
    except (nats.errors.Error, AssertionError):
        pass
    duplicates = sum(count - 1 for count in runs.values())
    print(
        f"\nkilled stream leader {leader} at {killed_at:.2f}s (new leader {new_leader}); "
        f"{TASKS} added in {added:.2f}s, all ran by {drained:.2f}s; "
        f"distinct {len(runs)}, runs {sum(runs.values())}, duplicates {duplicates}"
    )
    assert set(runs) == set(range(TASKS)), "a task was lost"


# -- multi-region (deploy/multiregion: two regions joined by gateways) ----------------

placed: list[tuple[str, str]] = []


def multiregion() -> ModuleType:
    directory = Path(__file__).resolve().parent.parent / "deploy" / "multiregion"
    spec = importlib.util.spec_from_file_location("deploy_regions", directory / "regions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def ship(order: int, worker: Worker = CurrentWorker()) -> None:
    placed.append((str(order), worker.name))


def regional_worker(docket: Docket, name: str) -> Worker:
    docket.register(ship)
    return Worker(
        docket,
        name=name,
        minimum_check_interval=timedelta(milliseconds=20),
        shutdown_grace=timedelta(seconds=1),
    )


async def test_a_task_added_in_a_region_runs_on_that_regions_pool(tmp_path: Path) -> None:
    placed.clear()
    regions = multiregion().Regions(tmp_path / "regions")
    regions.start()
    try:
        east_url, west_url = regions.url("east"), regions.url("west")
        await wait_for_jetstream([east_url, west_url], 30)
        async with (
            Docket("orders-east", url=east_url) as east,
            Docket("orders-west", url=west_url) as west,
        ):
            for docket, region in ((east, "east"), (west, "west")):
                info = await docket.connection.js.stream_info(docket.names.stream)
                assert info.cluster is not None and info.cluster.name == region
            async with (
                regional_worker(east, "east-pool") as east_pool,
                regional_worker(west, "west-pool") as west_pool,
            ):
                await asyncio.gather(*(east.add(ship)(n) for n in range(10)))
                await asyncio.gather(*(west.add(ship)(n) for n in range(10, 20)))
                await asyncio.gather(east_pool.run_until_finished(), west_pool.run_until_finished())
            assert sorted(placed) == sorted(
                [(str(n), "east-pool") for n in range(10)]
                + [(str(n), "west-pool") for n in range(10, 20)]
            )
            # East's pool gone: a west worker serves east's docket across the gateway.
            placed.clear()
            await east.add(ship)(99)
            async with Docket("orders-east", url=west_url) as east_seen_from_west:
                async with regional_worker(east_seen_from_west, "west-standby") as standby:
                    await standby.run_until_finished()
            assert placed == [("99", "west-standby")]
    finally:
        regions.stop()


# -- every shipped nats-server config is valid ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# deploy/auth/ holds include files, checked through the configs that include them.
CONFIGS = [
    *sorted(path for path in (ROOT / "deploy").rglob("*.conf") if path.parent.name != "auth"),
    ROOT / "nats.conf",
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: str(path.relative_to(ROOT)))
def test_config_passes_nats_server_check(config: Path) -> None:
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr


# -- a retried publish that landed is acknowledged, not stored twice -----------------


async def test_a_repeated_add_is_never_stored_twice(docket: Docket) -> None:
    # What the publisher's retry relies on. nats-server 2.15 checks the key's
    # expected last sequence before Nats-Msg-Id: while the first copy is queued, a
    # retry is refused as "key taken" (10071); once it has been consumed (gone from
    # the work queue), the key check passes and the Msg-Id catches the retry.
    subject = docket.names.run("k")
    headers = {
        "Nats-Msg-Id": "one-add-of-k",
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": docket.names.any_state("k"),
    }
    first = await docket.connection.publish(subject, b"x", headers)
    assert not first.duplicate
    with pytest.raises(APIError) as refused:
        await docket.connection.publish(subject, b"x", headers)
    assert refused.value.err_code == 10071

    await docket.connection.js.delete_msg(docket.names.stream, first.seq)  # as if run
    again = await docket.connection.publish(subject, b"x", headers)
    assert again.duplicate and again.seq == first.seq
    info = await docket.connection.js.stream_info(docket.names.stream)
    assert info.state.messages == 0
