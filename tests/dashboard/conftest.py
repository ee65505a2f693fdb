"""Fixtures of the dashboard tests: the dashboard served by a real uvicorn in a
process of its own (`docket-nats dashboard`), and one headless chromium per module."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from docket_nats import Docket
from docket_nats._embedded import free_port

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
START_TIMEOUT = 30.0
# What the in-process tests' client calls the dashboard (a loopback name: others are refused).
BASE = "http://localhost"
SAME_ORIGIN = {"Origin": BASE}


@asynccontextmanager
async def client_of(docket: Docket, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the dashboard app of `docket` (its live view stopped after)."""
    from docket_nats.dashboard import app

    application = app(docket, **options)
    transport = httpx.ASGITransport(app=application)
    async with application, httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def form_fields(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's first form posting to `action`."""
    found = re.search(rf'<form[^>]* action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert found is not None, f"no form posting to {action}"
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', found.group(1))
    return {html.unescape(name): html.unescape(value) for name, value in fields}


@contextmanager
def serving(nats_url: str, docket_name: str, *options: str, token: str | None = None,
            ) -> Iterator[str]:  # fmt: skip
    """`docket-nats dashboard` on 127.0.0.1:<free port>; yields its base URL once it answers."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    environment.pop("DOCKET_DASHBOARD_TOKEN", None)
    if token is not None:
        environment["DOCKET_DASHBOARD_TOKEN"] = token
    command = [
        sys.executable, "-m", "docket_nats", "dashboard", "--url", nats_url,
        "--docket", docket_name, "--port", str(port), "--tasks", "dashboard_tasks:tasks",
        *options,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the dashboard exited: {process.stdout.read()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{base}/login", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("the dashboard did not answer in time") from None
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            return f"{binary} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium for the module's tests."""
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("DOCKET_NATS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (DOCKET_NATS_REQUIRE_BROWSER=1): {missing}")
        pytest.skip(f"no headless browser: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="docket-dashboard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
