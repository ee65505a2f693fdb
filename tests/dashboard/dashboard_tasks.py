"""Tasks the dashboard tests add; the dashboard process registers them (--tasks)."""

from __future__ import annotations

import asyncio

from docket_nats import Progress

# `report` holds at 3 of 8 until the test sets this (same process as its worker).
reported = asyncio.Event()
release = asyncio.Event()


async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


async def refuse(reason: str) -> None:
    raise ValueError(f"refused: {reason}")


async def report(progress: Progress = Progress()) -> None:
    await progress.set_total(8)
    await progress.increment(3)
    await progress.set_message("3 <pages> done")
    reported.set()
    await release.wait()


# `flaky` fails while this is above 0 (counting down); its calls, in order.
flaky_failures = {"left": 0}
flaky_calls: list[str] = []


async def flaky(label: str, size: int = 1) -> None:
    flaky_calls.append(f"{label}:{size}")
    if flaky_failures["left"] > 0:
        flaky_failures["left"] -= 1
        raise RuntimeError(f"{label} failed")


tasks = [greet, refuse, report, flaky]
