"""The dashboard in a real headless chromium, served by `docket-nats dashboard` in a
process of its own; the tasks come from this test process (another NATS client)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import dashboard_tasks
import httpx
import pytest
from conftest import serving
from dashboard_tasks import greet

from docket_nats import Docket, Worker

XSS_KEY = "<script>alert(1)</script>"
LATER = timedelta(hours=1)


@pytest.fixture(scope="module")
def docket_name() -> str:
    # One docket (and one dashboard process) for the whole module.
    return f"test-dash-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def dashboard(nats_url: str, docket_name: str) -> Iterator[str]:
    with serving(nats_url, docket_name) as base:
        yield base


@pytest.fixture(scope="module")
def read_only_dashboard(nats_url: str, docket_name: str) -> Iterator[str]:
    with serving(nats_url, docket_name, "--read-only") as base:
        yield base


@pytest.fixture
async def docket(nats_url: str, docket_name: str) -> AsyncIterator[Docket]:
    async with Docket(name=docket_name, url=nats_url) as docket:
        docket.register(greet)
        yield docket


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def no_alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert  # noqa: B018
    except NoAlertPresentException:
        return True
    return False


def click_and_confirm(browser: Any, action: str, key: str | None = None) -> None:
    """Press the action's button (of `key`'s row) and accept the confirm() dialog."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    selector = f'form.action button[data-action="{action}"]'
    buttons = browser.find_elements(By.CSS_SELECTOR, selector)
    if key is not None:
        buttons = [
            button
            for button in buttons
            if button.find_element(By.XPATH, "..")
            .find_element(By.NAME, "key")
            .get_attribute("value")
            == key
        ]
    assert buttons, f"no {action} button for {key!r}"
    buttons[0].click()
    alert = WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    assert alert.text  # the question the page asks
    alert.accept()
    WebDriverWait(browser, 5).until(lambda page: "message=" in page.current_url)


async def eventually(check: Any, seconds: float = 5.0) -> None:
    """Polls `check` (a read of NATS state with nothing to await on), bounded."""
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_the_overview_shows_tasks_added_elsewhere_within_a_second_without_reload(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{dashboard}/")
    WebDriverWait(browser, 10).until(
        lambda page: page.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "1"
    )
    count = browser.find_element(By.CSS_SELECTOR, '[data-count="scheduled"]')
    before = int(count.text)
    browser.execute_script("window.sameDocument = 'yes'")
    for _ in range(3):
        await docket.add(greet, when=datetime.now(UTC) + LATER, key=unique("live"))("ann")
    WebDriverWait(browser, 1.0, poll_frequency=0.02).until(
        lambda page: int(count.text) == before + 3
    )
    assert browser.execute_script("return window.sameDocument") == "yes"  # no reload
    await docket.clear()


async def test_cancel_from_the_page_cancels_the_task(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    key = unique("cancel")
    await docket.add(greet, when=datetime.now(UTC) + LATER, key=key)("bob")
    browser.get(f"{dashboard}/executions?state=scheduled&prefix={key}")
    click_and_confirm(browser, "cancel", key)
    execution = await docket.get_execution(key)
    assert execution is not None and execution.state.value == "cancelled"
    assert "cancelled" in browser.find_element("id", "notice").text


async def test_run_now_makes_a_later_task_due_now_with_its_arguments(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    key = unique("run-now")
    await docket.add(greet, when=datetime.now(UTC) + LATER, key=key)("cleo", punctuation="?")
    browser.get(f"{dashboard}/executions?state=scheduled&prefix={key}")
    click_and_confirm(browser, "run-now", key)
    execution = await docket.get_execution(key)
    assert execution is not None
    assert execution.state.value == "queued"
    assert abs((execution.when - datetime.now(UTC)).total_seconds()) < 10
    assert (execution.args, execution.kwargs) == (("cleo",), {"punctuation": "?"})
    await docket.cancel(key)


async def test_retrying_a_dead_letter_adds_the_task_again(
    browser: Any, dashboard: str, docket: Docket, nats_url: str, docket_name: str
) -> None:
    key = unique("dead")
    await docket.add(greet, key=key)("dora")

    # A worker that does not know `greet` parks it as a dead letter.
    async def parked() -> bool:
        return key in [letter.key for letter in await docket.dead_letters()]

    async with (
        Docket(name=docket_name, url=nats_url) as unaware,
        Worker(unaware, minimum_check_interval=timedelta(milliseconds=20)) as worker,
    ):
        running = asyncio.create_task(worker.run_forever())
        try:
            await eventually(parked, seconds=10)
        finally:
            worker.stop()
            await running
    browser.get(f"{dashboard}/dead-letters")
    letters = browser.find_element("id", "letters").text
    assert f"greet(...){{{key}}}" in letters and "dora" not in letters  # as logged
    click_and_confirm(browser, "retry-dead-letter", key)
    execution = await docket.get_execution(key)
    assert execution is not None and execution.state.value == "queued"
    assert execution.args == ("dora",)
    assert key not in [letter.key for letter in await docket.dead_letters()]
    await docket.cancel(key)


async def test_strike_and_restore_from_the_page(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{dashboard}/strikes")
    browser.find_element(By.NAME, "task").send_keys("greet")
    browser.find_element(By.NAME, "conditions").send_keys("name == blocked")
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="strike"]').click()
    WebDriverWait(browser, 5).until(expected_conditions.alert_is_present()).accept()
    WebDriverWait(browser, 5).until(lambda page: "message=" in page.current_url)

    async def struck() -> bool:
        return [str(rule) for rule in docket.strike_list.rules()] == ["greet(name == 'blocked')"]

    await eventually(struck)
    refused = await docket.add(greet, key=unique("struck"))("blocked")
    assert refused.disposition.value == "struck"

    browser.get(f"{dashboard}/strikes")
    click_and_confirm(browser, "restore")

    async def restored() -> bool:
        return docket.strike_list.rules() == []

    await eventually(restored)


async def test_a_script_key_renders_as_text(browser: Any, dashboard: str, docket: Docket) -> None:
    from selenium.webdriver.common.by import By

    await docket.add(greet, when=datetime.now(UTC) + LATER, key=XSS_KEY)("eve")
    try:
        browser.get(f"{dashboard}/executions?state=scheduled&prefix={quote('<script>')}")
        assert XSS_KEY in browser.find_element(By.ID, "executions").text
        assert no_alert(browser)
        browser.get(f"{dashboard}/execution?key={quote(XSS_KEY)}")
        assert XSS_KEY in browser.find_element(By.TAG_NAME, "main").text
        assert no_alert(browser)
        # The page's own scripts are the only ones: the key made no element.
        scripts = browser.find_elements(By.TAG_NAME, "script")
        assert [each.get_attribute("src").rsplit("/", 1)[-1] for each in scripts] == [
            "dashboard.js"
        ]
    finally:
        await docket.cancel(XSS_KEY)


async def test_read_only_shows_no_buttons_and_refuses_actions(
    browser: Any, read_only_dashboard: str, docket: Docket
) -> None:
    from selenium.webdriver.common.by import By

    key = unique("read-only")
    await docket.add(greet, when=datetime.now(UTC) + LATER, key=key)("fay")
    browser.get(f"{read_only_dashboard}/executions?state=scheduled&prefix={key}")
    assert key in browser.find_element(By.ID, "executions").text  # the row is there...
    assert browser.find_elements(By.CSS_SELECTOR, "form.action") == []  # ...without buttons
    for path in ("/strikes", "/dead-letters", f"/execution?key={key}"):
        browser.get(f"{read_only_dashboard}{path}")
        assert browser.find_elements(By.CSS_SELECTOR, "form[method=post]") == []
    async with httpx.AsyncClient(base_url=read_only_dashboard) as client:
        for action in ("cancel", "run-now", "retry-dead-letter", "purge-dead-letters"):
            response = await client.post(
                f"/actions/{action}", data={"key": key}, headers={"Origin": read_only_dashboard}
            )
            assert response.status_code == 403
    execution = await docket.get_execution(key)
    assert execution is not None and execution.state.value == "scheduled"
    await docket.cancel(key)


async def test_retrying_a_failed_execution_from_its_page_runs_it_again(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    dashboard_tasks.flaky_calls.clear()
    dashboard_tasks.flaky_failures["left"] = 1
    docket.register(dashboard_tasks.flaky)
    key = unique("failed")
    await docket.add(dashboard_tasks.flaky, key=key)("drum", size=2)
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        await worker.run_until_finished()
        browser.get(f"{dashboard}/execution?key={quote(key)}")
        assert "flaky(..., size=...)" in browser.find_element("tag name", "main").text
        click_and_confirm(browser, "retry-failed", key)
        assert "added again" in browser.find_element("id", "notice").text
        await worker.run_until_finished()
    assert dashboard_tasks.flaky_calls == ["drum:2", "drum:2"]  # the same call, again
    execution = await docket.get_execution(key)
    assert execution is not None and execution.state.value == "completed"


async def test_an_execution_page_follows_its_run_without_reload(
    browser: Any, dashboard: str, docket: Docket
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    dashboard_tasks.reported.clear()
    dashboard_tasks.release.clear()
    docket.register(dashboard_tasks.report)
    key = unique("followed")
    await docket.add(dashboard_tasks.report, key=key)()  # queued: no worker yet
    browser.get(f"{dashboard}/execution?key={quote(key)}")
    state = browser.find_element(By.CSS_SELECTOR, '[data-field="state"]')
    progress = browser.find_element(By.CSS_SELECTOR, "p.progress")
    assert state.text == "queued" and not progress.is_displayed()
    browser.execute_script("window.sameDocument = 'yes'")
    async with Worker(docket, minimum_check_interval=timedelta(milliseconds=20)) as worker:
        running = asyncio.create_task(worker.run_until_finished())
        try:
            # Polled from the event loop: the worker runs on it meanwhile.
            async def shown() -> bool:
                return state.text == "running" and progress.is_displayed()

            await eventually(shown, seconds=5)
            text = browser.find_element(By.CSS_SELECTOR, ".progress-text").text
            assert text == "3 / 8 (38%) 3 <pages> done"
            bar = browser.find_element(By.CSS_SELECTOR, "p.progress progress")
            assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("3", "8")
            assert browser.find_element(By.CSS_SELECTOR, '[data-field="worker"]').text == (
                worker.name
            )
        finally:
            dashboard_tasks.release.set()
            await running
    WebDriverWait(browser, 5, poll_frequency=0.05).until(lambda _: state.text == "completed")
    assert not progress.is_displayed()
    assert browser.find_element(By.ID, "ended").is_displayed()
    steps = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#history tr")]
    assert steps == ["due", "running", "completed"]
    assert browser.execute_script("return window.sameDocument") == "yes"  # no reload
