"""What a run's two log lines cost by themselves, without a worker or a server.

    python -m benchmarks.run_lines [--runs 50000] [--rounds 3]

Calls `log_start` and `log_finish` for `--runs` executions (one `Logged`
argument, one not) with `_log_setup.configure` writing to a file, at INFO
(`plain`, `json`) and at WARNING (`off`: one level check per line), turning the
event loop every 10 runs as a worker would. Prints the least CPU time per run
of each. Hot caches and no other work: a floor for what the lines add to a
worker (`logging_overhead.py` measures them inside a drain).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, cast

from docket_nats import Docket, Execution, Logged
from docket_nats._log_setup import configure
from docket_nats._run_log import log_finish, log_start
from docket_nats._types import TaskOutcome


async def noop(order: Annotated[str, Logged], card: str) -> None:
    pass


async def lines(runs: int) -> float:
    """CPU seconds per run for `runs` start + finish line pairs."""
    docket = cast(Docket, SimpleNamespace(context=SimpleNamespace(name="bench")))
    outcome = TaskOutcome(duration=timedelta(milliseconds=1))
    started = time.process_time()
    for index in range(runs):
        execution = Execution(
            docket, noop, (f"order-{index}", "secret"), {}, f"key-{index}", datetime.now(UTC), 1
        )
        log_start(execution, "worker-1")
        log_finish(execution, outcome, "worker-1")
        if index % 10 == 0:
            await asyncio.sleep(0)
    return (time.process_time() - started) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    least: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(options.rounds):
            for label in ("off", "plain", "json"):
                stream: Any = (Path(directory) / f"{label}.log").open("a")
                if label == "off":
                    configure("plain", "WARNING", stream=stream)
                else:
                    configure(label, "INFO", stream=stream)  # type: ignore[arg-type]
                cost = asyncio.run(lines(options.runs))
                least[label] = min(least.get(label, 1.0), cost)
    for label, cost in least.items():
        extra = (cost - least["off"]) * 1e6
        print(f"{label:>5}: {cost * 1e6:6.2f} µs CPU per run (+{extra:.2f} for its two lines)")


if __name__ == "__main__":
    main()
