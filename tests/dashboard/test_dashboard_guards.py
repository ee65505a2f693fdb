"""The dashboard's guards and edges: the Host check and framing headers, bounded
forms, keys that need encoding, what a dead letter shows of its call, a live
view that forgets expired records and cleans up a failed start, and actions
refused by a full work stream."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from conftest import SAME_ORIGIN, client_of, form_fields, serving
from dashboard_tasks import greet
from starlette.requests import Request

from docket_nats import Docket, Worker
from docket_nats.dashboard import app
from docket_nats.dashboard._actions import FORM_LIMIT
from docket_nats.dashboard._app import events
from docket_nats.dashboard._live import Live

LATER = timedelta(hours=1)
HTML = {**SAME_ORIGIN, "Accept": "text/html"}


async def park(nats_url: str, docket_name: str) -> None:
    """Run the docket with a worker that knows no task: everything is parked."""
    async with (
        Docket(name=docket_name, url=nats_url) as unaware,
        Worker(unaware, minimum_check_interval=timedelta(milliseconds=20)) as worker,
    ):
        await worker.run_until_finished()


async def test_a_foreign_host_is_refused_and_no_page_may_be_framed(docket: Docket) -> None:
    async with client_of(docket) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
        for loopback in ("127.0.0.1:8470", "[::1]:8470", "LOCALHOST"):
            assert (await client.get("/workers", headers={"Host": loopback})).status_code == 200
        # A rebound name (evil.test resolving to 127.0.0.1) sends its own Host.
        foreign = {"Host": "evil.test:8470", "Origin": "http://evil.test:8470"}
        for method, path in (("GET", "/"), ("GET", "/executions"), ("GET", "/events"),
                             ("POST", "/actions/strike"), ("POST", "/login")):  # fmt: skip
            refused = await client.request(method, path, headers=foreign, data={"task": "greet"})
            assert refused.status_code == 400, (method, path)
            assert "evil.test" in refused.text
            assert refused.headers["x-frame-options"] == "DENY"
    assert docket.strike_list.rules() == []
    async with client_of(docket, allowed_hosts=["dash.example", "::2"]) as client:
        for named in ("dash.example", "dash.example:443", "[::2]:8470", "localhost"):
            assert (await client.get("/", headers={"Host": named})).status_code == 200
        assert (await client.get("/", headers={"Host": "evil.test"})).status_code == 400


async def test_the_command_answers_to_its_allowed_hosts_only(
    nats_url: str, docket_name: str, docket: Docket
) -> None:
    with serving(nats_url, docket_name, "--allowed-host", "dash.example") as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/")).status_code == 200  # 127.0.0.1:<port>
            named = await client.get("/", headers={"Host": "dash.example"})
            assert named.status_code == 200
            assert (await client.get("/", headers={"Host": "evil.test"})).status_code == 400


async def test_a_form_is_read_no_further_than_its_limit(docket: Docket) -> None:
    chunk = b"x" * 65536
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(2000):  # 128 MB, were it all read
            sent += 1
            yield chunk

    async with client_of(docket) as client:
        declared = await client.post(
            "/actions/strike",
            content=b"task=greet",
            headers={**SAME_ORIGIN, "Content-Length": str(FORM_LIMIT + 1)},
        )
        assert declared.status_code == 409 and "too large" in declared.text
        streamed = await client.post("/actions/strike", content=endless(), headers=SAME_ORIGIN)
        assert streamed.status_code == 409 and "too large" in streamed.text
    assert sent <= FORM_LIMIT // len(chunk) + 2
    assert docket.strike_list.rules() == []


async def test_an_action_returns_to_a_key_that_needs_encoding(docket: Docket) -> None:
    docket.register(greet)
    key = "a&b=1 #c+d%2e/é"
    await docket.add(greet, when=datetime.now(UTC) + LATER, key=key)("ann")
    async with client_of(docket) as client:
        page = await client.get(f"/execution?{urlencode({'key': key})}")
        fields = form_fields(page.text, "/actions/cancel")
        assert fields["key"] == key
        done = await client.post("/actions/cancel", data=fields, headers=HTML)
        assert done.status_code == 303
        location = urlsplit(done.headers["location"])
        assert location.path == "/execution"
        assert parse_qs(location.query) == {"key": [key], "message": [f"cancelled {key}"]}
        back = await client.get(done.headers["location"])
    assert back.text.count("a&amp;b=1 #c+d%2e/é") >= 2  # the message, and the key's page


async def test_a_dead_letter_shows_its_call_as_logged_only(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    docket.register(greet)
    await docket.add(greet, key="secretive")("hunter2", punctuation="?!")
    await park(nats_url, docket_name)
    async with client_of(docket) as client:
        page = (await client.get("/dead-letters")).text
    assert "secretive" in page
    assert "hunter2" not in page and "?!" not in page
    assert "<code>greet(..., punctuation=...){secretive}</code>" in page
    # A dashboard that does not know the task shows no argument at all.
    async with Docket(name=docket_name, url=nats_url) as stranger, client_of(stranger) as client:
        page = (await client.get("/dead-letters")).text
    assert "hunter2" not in page and "?!" not in page
    assert "greet(2 arguments, not shown)" in page


async def test_a_full_work_stream_refuses_an_action_with_a_message(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    docket.register(greet)
    await docket.add(greet, key="parked")("ann")
    await park(nats_url, docket_name)
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="filler")("bob")
    # The dashboard's own Docket admits one task waiting: the filler is it.
    async with Docket(name=docket_name, url=nats_url, max_queued_tasks=1) as bounded:
        bounded.register(greet)
        async with client_of(bounded) as client:
            plain = await client.post(
                "/actions/retry-dead-letter", data={"key": "parked"}, headers=SAME_ORIGIN
            )
            assert plain.status_code == 503
            assert "try again later" in plain.text and "max_queued_tasks=1" in plain.text
            page = await client.post(
                "/actions/retry-dead-letter",
                data={"key": "parked", "next": "/dead-letters"},
                headers=HTML,
            )
            assert page.status_code == 303 and "message=not+done" in page.headers["location"]
    assert [letter.key for letter in await docket.dead_letters()] == ["parked"]


async def test_the_live_view_forgets_records_past_their_ttl(
    nats_url: str, docket_name: str
) -> None:
    async with (
        Docket(name=docket_name, url=nats_url, execution_ttl=timedelta(seconds=1)) as docket,
        Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker,
    ):
        docket.register(greet)
        live = Live(docket, refresh=0.05)
        await live.start()
        try:
            await docket.add(greet, key="brief")("ann")
            await worker.run_until_finished()
            async with asyncio.timeout(10):
                while live.states["completed"] != 1:
                    await live.updated.wait()
                while "brief" in live.rows:  # gone one TTL after it ended
                    await live.updated.wait()
            assert live.states["completed"] == 0
            assert "brief" not in [row["key"] for row in live.summary["recent"]]
        finally:
            await live.stop()


async def test_a_failed_start_leaves_nothing_running(docket: Docket) -> None:
    # Without its dead-letter stream the docket's counts cannot be read.
    await docket.connection.js.delete_stream(docket.names.dead_stream)
    application = app(docket)
    live = application.state.dashboard.live
    transport = httpx.ASGITransport(app=application)
    async with (
        application,
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        for _ in range(2):
            refused = await client.get("/")
            assert refused.status_code == 503 and "cannot read the docket" in refused.text
            assert live._subscriptions == [] and live._tasks == []


async def test_an_event_stream_listens_only_once_it_runs(docket: Docket) -> None:
    application = app(docket)
    live = application.state.dashboard.live
    scope = {"type": "http", "method": "GET", "path": "/events", "query_string": b"key=a",
             "headers": [], "app": application}  # fmt: skip
    response = await events(Request(scope))
    assert live.listeners == 0  # a client gone before the stream starts leaves nothing
    body = response.body_iterator  # type: ignore[attr-defined]
    first = await anext(body)
    assert first.startswith("data: ") and live.listeners == 1
    await body.aclose()
    assert live.listeners == 0


def purge_button(page: str, key: str) -> dict[str, str]:
    """The fields of the Purge button of `key`'s letters on the dead-letters page."""
    for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S):
        if "/actions/purge-dead-letters" in form and f'name="key" value="{key}"' in form:
            return form_fields(form, "/actions/purge-dead-letters")
    raise AssertionError(f"no Purge button for {key}")


async def test_purging_a_letter_spares_one_parked_after_the_page(
    docket: Docket, nats_url: str, docket_name: str
) -> None:
    docket.register(greet)
    await docket.add(greet, key="twice")("ann")
    await park(nats_url, docket_name)
    async with client_of(docket) as client:
        shown = purge_button((await client.get("/dead-letters")).text, "twice")
        assert shown["parked_at"]
        await docket.add(greet, key="twice")("bob")  # parked after the page was shown
        await park(nats_url, docket_name)
        stale = await client.post("/actions/purge-dead-letters", data=shown, headers=SAME_ORIGIN)
        assert stale.status_code == 409 and "newer letter twice" in stale.text
        assert len(await docket.dead_letters()) == 2
        fresh = purge_button((await client.get("/dead-letters")).text, "twice")
        assert fresh["parked_at"] != shown["parked_at"]
        done = await client.post("/actions/purge-dead-letters", data=fresh, headers=SAME_ORIGIN)
        assert done.status_code == 200 and done.text == "purged 2 dead letters"
    assert await docket.dead_letters() == []
