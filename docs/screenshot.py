"""Makes docs/dashboard.png: the dashboard's overview of a docket under load.

    python docs/screenshot.py [--seconds 40] [--out docs/dashboard.png]

Starts a nats-server on 127.0.0.1, a worker (concurrency 8) running three tasks
(quick, slow with Progress, one that fails one time in ten), a producer adding
about 60 tasks a second plus a few for later, and the dashboard (uvicorn, in
this process); after `--seconds` of load, headless chromium (Debian's
/usr/bin/chromium through /usr/bin/chromedriver) opens the overview and saves it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from docket_nats import Docket, Progress, Worker
from docket_nats._embedded import ServerProcess, free_port
from docket_nats.dashboard import app

HERE = Path(__file__).resolve().parent


async def send_receipt(order: int) -> None:
    await asyncio.sleep(random.uniform(0.01, 0.05))


async def render_report(pages: int, progress: Progress = Progress()) -> None:
    await progress.set_total(pages)
    for _ in range(pages):
        await asyncio.sleep(0.2)
        await progress.increment()


async def charge_card(order: int) -> None:
    await asyncio.sleep(0.02)
    if order % 10 == 0:
        raise ValueError(f"card declined for order {order}")


async def produce(docket: Docket, stop: asyncio.Event) -> None:
    order = 0
    while not stop.is_set():
        order += 1
        await docket.add(send_receipt, key=f"receipt-{order}")(order)
        await docket.add(charge_card, key=f"charge-{order}")(order)
        if order % 20 == 0:
            await docket.add(render_report, key=f"report-{order}")(random.randint(10, 40))
        if order % 5 == 0:
            later = datetime.now(UTC) + timedelta(minutes=random.uniform(1, 59))
            await docket.add(send_receipt, when=later, key=f"later-{order}")(order)
        await asyncio.sleep(0.03)


def photograph(url: str, out: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(prefix='docket-screenshot-')}",
        "--window-size=1280,1100", "--hide-scrollbars",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        driver.implicitly_wait(5)
        driver.find_element("css selector", "body[data-live='1']")
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png")
    options = parser.parse_args()
    server = ServerProcess(free_port(), Path(tempfile.mkdtemp(prefix="docket-screenshot-")))
    server.start()
    try:
        async with Docket(name="shop", url=server.url) as docket:
            for task in (send_receipt, render_report, charge_card):
                docket.register(task)
            port = free_port()
            web = uvicorn.Server(
                uvicorn.Config(app(docket), host="127.0.0.1", port=port, log_level="warning",
                               timeout_graceful_shutdown=1)
            )  # fmt: skip
            serving = asyncio.create_task(web.serve())
            stop = asyncio.Event()
            async with Worker(docket, concurrency=8, name="worker-a") as worker:
                working = asyncio.create_task(worker.run_forever())
                producing = asyncio.create_task(produce(docket, stop))
                await asyncio.sleep(options.seconds)
                await asyncio.to_thread(photograph, f"http://127.0.0.1:{port}/", options.out)
                stop.set()
                await producing
                worker.stop()
                await working
            web.should_exit = True
            await serving
        print(f"saved {options.out}")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
