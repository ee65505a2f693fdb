"""The dashboard over HTTP: the app in this process (httpx on its ASGI interface)
on a real NATS server, and `docket-nats dashboard` for what needs a real server
(event streams, the bind rule)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dashboard_tasks
import httpx
from conftest import BASE, SAME_ORIGIN, client_of, form_fields, serving
from dashboard_tasks import greet, refuse
from starlette.applications import Starlette
from starlette.routing import Mount

from docket_nats import Docket, Worker
from docket_nats.dashboard import app
from docket_nats.dashboard._live import Live
from docket_nats.dashboard._security import TOKEN_COOKIE, refusal_to_bind

LATER = timedelta(hours=1)


async def test_a_token_guards_every_page_and_action(docket: Docket) -> None:
    docket.register(greet)
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="guarded")("ann")
    async with client_of(docket, token="s3cret") as client:
        anonymous = await client.get("/executions")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=%2Fexecutions"
        assert (await client.get("/?token=wrong")).status_code == 403
        refused = await client.post("/actions/cancel", data={"key": "guarded"}, headers=SAME_ORIGIN)
        assert refused.status_code == 403
        by_header = await client.get("/", headers={"X-Docket-Token": "s3cret"})
        assert by_header.status_code == 200 and "Overview" in by_header.text
        one = await client.get("/execution?key=guarded", headers={"X-Docket-Token": "s3cret"})
        assert "greet(...){guarded}" in one.text  # as logged: arguments not Logged are hidden

        # A ?token= link sets the cookie and drops the token from the address.
        link = await client.get("/executions?state=scheduled&token=s3cret")
        assert link.status_code == 303
        assert link.headers["location"] == "/executions?state=scheduled"
        assert TOKEN_COOKIE in link.headers["set-cookie"]
        assert "httponly" in link.headers["set-cookie"].lower()
        assert "guarded" in (await client.get("/executions?state=scheduled")).text

        # With the token, an action still needs to come from the dashboard's own pages.
        for cross_site in ({}, {"Origin": "http://evil.test"}, {"Referer": "http://evil.test/"}):
            response = await client.post(
                "/actions/cancel", data={"key": "guarded"}, headers=cross_site
            )
            assert response.status_code == 403
        assert (await docket.get_execution("guarded")).state.value == "scheduled"  # type: ignore[union-attr]
        done = await client.post("/actions/cancel", data={"key": "guarded"}, headers=SAME_ORIGIN)
        assert done.status_code == 200
    async with asyncio.timeout(5):
        # cancel() publishes its CANCELLED record without waiting for the stream's
        # ack: under load a read right after may not see it yet.
        while True:
            if await docket.get_execution("guarded") is not None:
                break
            await asyncio.sleep(0.01)
    assert (await docket.get_execution("guarded")).state.value == "cancelled"  # type: ignore[union-attr]


async def test_the_login_form_sets_the_token_cookie(docket: Docket) -> None:
    async with client_of(docket, token="s3cret") as client:
        wrong = await client.post("/login", data={"token": "nope"}, headers=SAME_ORIGIN)
        assert wrong.status_code == 403
        right = await client.post(
            "/login", data={"token": "s3cret", "next": "/workers"}, headers=SAME_ORIGIN
        )
        assert right.status_code == 303 and right.headers["location"] == "/workers"
        assert (await client.get("/workers")).status_code == 200
        for elsewhere in ("//evil.test/", "/\\evil.test/", "https://evil.test/"):
            away = await client.post(
                "/login", data={"token": "s3cret", "next": elsewhere}, headers=SAME_ORIGIN
            )
            assert away.headers["location"] == "/"


async def test_read_only_refuses_every_action(docket: Docket) -> None:
    docket.register(greet)
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="kept")("bob")
    async with client_of(docket, read_only=True) as client:
        page = await client.get("/executions?state=scheduled")
        assert "kept" in page.text and '<form class="action"' not in page.text
        for action in ("cancel", "run-now", "retry-dead-letter", "retry-failed",
                       "purge-dead-letters", "strike", "restore"):  # fmt: skip
            response = await client.post(
                f"/actions/{action}", data={"key": "kept", "task": "greet"}, headers=SAME_ORIGIN
            )
            assert response.status_code == 403
    assert (await docket.get_execution("kept")).state.value == "scheduled"  # type: ignore[union-attr]
    assert docket.strike_list.rules() == []


def test_only_loopback_binds_without_a_token() -> None:
    assert refusal_to_bind("127.0.0.1", None) is None
    assert refusal_to_bind("::1", None) is None
    assert refusal_to_bind("localhost", None) is None
    assert refusal_to_bind("10.1.2.3", "s3cret") is None
    for host in ("0.0.0.0", "10.1.2.3", "dashboard.example"):
        assert "--token" in (refusal_to_bind(host, None) or "")


def test_the_command_refuses_a_public_bind_without_a_token(nats_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "docket_nats", "dashboard", "--url", nats_url,
         "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "--token" in result.stderr and "DOCKET_DASHBOARD_TOKEN" in result.stderr
    assert result.stderr.count("\n") <= 3  # one line (and the fix), no traceback


async def test_executions_are_filtered_and_paged_on_the_server(
    docket: Docket, worker: Worker
) -> None:
    docket.register(greet)
    for index in range(60):
        await docket.add(greet, key=f"page-{index:02}")(f"n{index}")
    for index in range(5):
        await docket.add(greet, key=f"other-{index}")("x")
    await worker.run_until_finished()
    later = datetime.now(UTC) + LATER
    for index in range(55):
        await docket.add(greet, when=later, key=f"later-{index:02}")("z")
    async with client_of(docket) as client:
        live = client._transport.app.state.dashboard.live  # type: ignore[attr-defined]
        await client.get("/")  # starts the live view
        async with asyncio.timeout(10):
            while live.states["completed"] < 65:
                await live.updated.wait()
        first = await client.get("/executions?state=completed&prefix=page-")
        assert "60 executions · page 1 of 2" in first.text
        assert first.text.count("state state-completed") == 50
        second = await client.get("/executions?state=completed&prefix=page-&page=2")
        assert second.text.count("state state-completed") == 10
        everything = await client.get("/executions")
        assert "65 executions · page 1 of 2" in everything.text
        assert "other-4" in (await client.get("/executions?prefix=other-")).text
        assert "page-" not in (await client.get("/executions?prefix=other-")).text
        assert "0 executions" in (await client.get("/executions?state=failed")).text
        waiting = await client.get("/executions?state=scheduled")
        assert "55 executions · page 1 of 2" in waiting.text
        assert waiting.text.count("state state-scheduled") == 50
        rest = await client.get("/executions?state=scheduled&page=2")
        assert rest.text.count("state state-scheduled") == 5
        assert "later-54" in rest.text and "later-00" not in rest.text

        one = await client.get("/execution?key=page-07")
        assert "greet: arguments are not kept once a run starts" in one.text
        assert "&#x27;hello n7!&#x27;" in one.text  # the result
        assert "completed" in one.text


async def test_the_app_mounts_under_a_prefix(docket: Docket) -> None:
    docket.register(greet)
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="mounted")("ann")
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="kept-1")("bob")
    inner = app(docket)
    guarded = app(docket, token="s3cret")
    outer = Starlette(routes=[Mount("/docket", app=inner), Mount("/guarded", app=guarded)])
    transport = httpx.ASGITransport(app=outer)
    async with inner, guarded, httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        page = await client.get("/docket/executions?state=scheduled&prefix=mount")
        assert page.status_code == 200
        assert 'href="/docket/execution?key=mounted"' in page.text
        assert 'src="/docket/static/dashboard.js"' in page.text
        assert (await client.get("/docket/static/dashboard.js")).status_code == 200
        # The executions page's own Cancel button, as a browser posts it.
        fields = form_fields(page.text, "/docket/actions/cancel")
        done = await client.post(
            "/docket/actions/cancel", data=fields, headers={**SAME_ORIGIN, "Accept": "text/html"}
        )
        assert done.status_code == 303
        location = done.headers["location"]
        assert location.startswith("/docket/executions?state=scheduled&prefix=mount&message=")
        back = await client.get(location)
        assert back.status_code == 200 and "cancelled mounted" in back.text

        # A login round trip keeps the page asked for, its query included.
        asked = await client.get("/guarded/execution?key=kept-1")
        assert asked.status_code == 303
        assert asked.headers["location"] == "/guarded/login?next=%2Fexecution%3Fkey%3Dkept-1"
        form = await client.get(asked.headers["location"])
        fields = form_fields(form.text, "/guarded/login")
        assert fields == {"next": "/execution?key=kept-1"}
        logged_in = await client.post(
            "/guarded/login", data={**fields, "token": "s3cret"}, headers=SAME_ORIGIN
        )
        assert logged_in.headers["location"] == "/guarded/execution?key=kept-1"
        shown = await client.get(logged_in.headers["location"])
        assert shown.status_code == 200 and "greet(...){kept-1}" in shown.text

        # The host stops the mounted dashboard's live view: open streams end.
        listening = inner.state.dashboard.live.listen()
    async with asyncio.timeout(5):
        while (await listening.queue.get()) is not None:
            pass


async def test_every_open_page_gets_the_same_live_summary(
    nats_url: str, docket_name: str, docket: Docket
) -> None:
    docket.register(greet)
    with serving(nats_url, docket_name) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def summaries(stream: httpx.Response) -> AsyncIterator[dict[str, Any]]:
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line.removeprefix("data: "))

            async with (
                client.stream("GET", "/events") as one,
                client.stream("GET", "/events") as two,
            ):
                assert one.headers["content-type"].startswith("text/event-stream")
                pages = [summaries(one), summaries(two)]
                for page in pages:
                    assert (await anext(page))["counts"]["scheduled"] == 0
                await docket.add(greet, when=datetime.now(UTC) + LATER, key="fanned")("ann")
                for page in pages:
                    async with asyncio.timeout(5):
                        while (await anext(page))["counts"]["scheduled"] != 1:
                            pass


async def test_a_failed_execution_shows_its_error_and_traceback_escaped(
    docket: Docket, worker: Worker
) -> None:
    docket.register(refuse)
    await docket.add(refuse, key="refused")("<b>no</b>")
    await worker.run_until_finished()
    async with client_of(docket) as client:
        page = (await client.get("/execution?key=refused")).text
    assert "ValueError: refused: &lt;b&gt;no&lt;/b&gt;" in page
    assert "Traceback" in page and "dashboard_tasks.py" in page
    assert "<b>no</b>" not in page
    assert "state state-failed" in page


async def test_a_running_execution_shows_its_progress_and_worker(
    docket: Docket, worker: Worker
) -> None:
    dashboard_tasks.reported.clear()
    dashboard_tasks.release.clear()
    docket.register(dashboard_tasks.report)
    await docket.add(dashboard_tasks.report, key="reporting")()
    running = asyncio.create_task(worker.run_until_finished())
    try:
        async with asyncio.timeout(10):
            await dashboard_tasks.reported.wait()
        async with client_of(docket) as client, asyncio.timeout(10):
            page = ""
            while True:  # the RUNNING record may lag the task's own event
                page = (await client.get("/execution?key=reporting")).text
                if "state state-running" in page:
                    break
                await asyncio.sleep(0.02)
        assert '<progress max="8" value="3">' in page
        assert "3 / 8 (38%) 3 &lt;pages&gt; done" in page
        assert "state state-running" in page
        assert worker.name in page
    finally:
        dashboard_tasks.release.set()
        await running


async def test_a_failed_execution_shows_its_call_and_history_and_is_retried(
    docket: Docket, worker: Worker
) -> None:
    dashboard_tasks.flaky_calls.clear()
    dashboard_tasks.flaky_failures["left"] = 1
    docket.register(dashboard_tasks.flaky)
    await docket.add(dashboard_tasks.flaky, key="flaky-1")("crate", size=4)
    await worker.run_until_finished()
    async with client_of(docket) as client:
        page = (await client.get("/execution?key=flaky-1")).text
        assert "<code>flaky(..., size=...){flaky-1}</code>" in page  # the kept call, as logged
        history = page.split('id="history">', 1)[1].split("</tbody>", 1)[0]
        assert [cell.split("</td>")[0] for cell in history.split("<tr><td>")[1:]] == [
            "due",
            "running",
            "failed",
        ]
        assert 'data-action="retry-failed"' in page
        retried = await client.post(
            "/actions/retry-failed", data={"key": "flaky-1"}, headers=SAME_ORIGIN
        )
        assert retried.status_code == 200 and retried.text == "flaky-1 added again"
        queued = await docket.get_execution("flaky-1")
        assert queued is not None and queued.state.value == "queued"
        await worker.run_until_finished()
        assert dashboard_tasks.flaky_calls == ["crate:4", "crate:4"]
        # Completed now: nothing failed to retry, and the page offers no Retry.
        again = await client.post(
            "/actions/retry-failed", data={"key": "flaky-1"}, headers=SAME_ORIGIN
        )
        assert again.status_code == 409 and "no failed execution" in again.text
        page = (await client.get("/execution?key=flaky-1")).text
        assert 'data-action="retry-failed"' not in page


async def test_a_page_following_a_key_gets_its_state_progress_and_history(
    docket: Docket, worker: Worker
) -> None:
    dashboard_tasks.reported.clear()
    dashboard_tasks.release.clear()
    docket.register(dashboard_tasks.report)
    live = Live(docket, refresh=0.05)
    await live.start()  # its counts every 0.05 s carry the followed keys
    page = live.listen(("followed",))
    unrelated = live.listen()

    async def news(check: Any) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                text = await page.queue.get()
                assert text is not None
                followed = json.loads(text).get("keys", {}).get("followed")
                if followed is not None and check(followed):
                    return followed

    running = asyncio.create_task(worker.run_until_finished())
    try:
        await docket.add(dashboard_tasks.report, key="followed")()
        seen = await news(lambda one: one["progress"] is not None)
        assert seen["state"] == "running" and seen["worker"] == worker.name
        assert seen["progress"] == {"current": 3, "total": 8, "message": "3 <pages> done"}
        assert [step for step, _ in seen["history"]] == ["due", "running"]
        dashboard_tasks.release.set()
        ended = await news(lambda one: one["state"] == "completed")
        assert ended["progress"] is None
        assert [step for step, _ in ended["history"]] == ["due", "running", "completed"]
        assert ended["revision"] > seen["revision"]
        # A page that names no key is sent no keys.
        while not unrelated.queue.empty():
            assert "keys" not in json.loads(unrelated.queue.get_nowait() or "{}")
    finally:
        dashboard_tasks.release.set()
        await running
        await live.stop()


async def test_the_executions_page_follows_the_keys_it_lists(docket: Docket) -> None:
    docket.register(greet)
    await docket.add(greet, when=datetime.now(UTC) + LATER, key="listed-1")("ann")
    async with client_of(docket) as client:
        page = (await client.get("/executions?state=scheduled&prefix=listed-")).text
    assert 'data-events="/events?key=listed-1"' in page
    assert 'data-live-key="listed-1" data-field="state" data-revision="0"' in page
