"""The command line as people and scripts meet it, through the real entry point
(a subprocess): `--format json` on every listing, parsed back; tables; the live
watch view on a terminal; one-line errors with exit codes; help with examples;
shell completion; `docket-nats server`."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from background_worker import running_in_background

from docket_nats import Docket, Progress, Worker, tasks

pytestmark = pytest.mark.timeout(120)

SCRIPT = str(Path(sys.executable).with_name("docket-nats"))


async def cli(*arguments: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m docket_nats ARGS` without the caller's $DOCKET_* variables."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def target(docket: Docket, nats_url: str) -> list[str]:
    return ["--url", nats_url, "--docket", docket.name]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def parked(order: int) -> None:
    """Registered only here: the worker parks it as a dead letter."""


@pytest.fixture
async def busy_docket(docket: Docket, worker: Worker, nats_url: str) -> AsyncIterator[Worker]:
    """A live worker, two scheduled tasks, one strike rule and one dead letter."""
    later = datetime.now(UTC) + timedelta(hours=1)
    # Another producer's task, unknown to the worker: parked as a dead letter.
    async with Docket(name=docket.name, url=nats_url) as other:
        await other.add(parked, key="unknown-to-the-worker")(1)
    await worker.run_until_finished()
    await docket.add(tasks.trace, later, key="later-1")("one")
    await docket.add(tasks.sleep, later, key="later-2")(2.0)
    await docket.strike("sleep", "seconds", ">", 60)
    async with running_in_background(docket, worker):
        yield worker


async def test_every_listing_speaks_json(
    docket: Docket, nats_url: str, busy_docket: Worker
) -> None:
    where = target(docket, nats_url)

    code, out, err = await cli("snapshot", *where, "--format", "json", "--stats")
    assert code == 0, err
    snapshot = json.loads(out)
    assert sorted(t["key"] for t in snapshot["tasks"]) == ["later-1", "later-2"]
    assert [w["name"] for w in snapshot["workers"]] == [busy_docket.name]
    assert {row["function"] for row in snapshot["stats"]} == {"trace", "sleep"}

    for listing in (["workers"], ["workers", "ls"], ["workers", "for-task", "trace"]):
        code, out, err = await cli(*listing, *where, "--format", "json")
        assert code == 0, (listing, err)
        rows = [json.loads(line) for line in out.splitlines()]
        assert [row["name"] for row in rows] == [busy_docket.name], listing
        assert "trace" in rows[0]["tasks"]

    code, out, err = await cli("strikes", *where, "--format", "json")
    assert code == 0, err
    (rule,) = json.loads(out)
    assert rule["task"] == "sleep"
    assert rule["conditions"] == [
        {"parameter": "seconds", "operator": ">", "value": 60, "type": "int"}
    ]

    code, out, err = await cli("dead-letters", *where, "--format", "json")
    assert code == 0, err
    (letter,) = [json.loads(line) for line in out.splitlines()]
    assert letter["key"] == "unknown-to-the-worker" and "unknown task" in letter["reason"]

    # The format from the environment, and --json as an alias, agree.
    code, from_environment, _ = await cli("strikes", *where, env={"DOCKET_FORMAT": "json"})
    code_alias, alias, _ = await cli("strikes", *where, "--json")
    assert code == code_alias == 0
    assert json.loads(from_environment) == json.loads(alias) == [rule]


async def test_piped_tables_are_plain_columns(
    docket: Docket, nats_url: str, busy_docket: Worker
) -> None:
    where = target(docket, nats_url)
    code, out, err = await cli("snapshot", *where)
    assert code == 0, err
    assert not set(out) & set("│─╭╮╰╯┃━")  # no box drawing when piped
    header = next(line for line in out.splitlines() if line.startswith("WHEN"))
    assert header.split() == ["WHEN", "FUNCTION", "KEY", "WORKER", "STARTED", "STATE"]
    (row,) = [line for line in out.splitlines() if " later-1 " in line]
    assert row.split()[-1] == "scheduled"

    code, out, _ = await cli("workers", "ls", *where)
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == f"Workers in Docket: {docket.name}"
    assert lines[1].split() == ["WORKER", "RUNNING", "CONCURRENCY", "LAST", "SEEN", "TASKS"]
    assert lines[2].split()[0] == busy_docket.name

    code, out, _ = await cli("strikes", *where)
    assert code == 0 and any(line.split()[:2] == ["sleep", "seconds"] for line in out.splitlines())

    code, out, _ = await cli("dead-letters", *where)
    assert code == 0 and out.splitlines()[0].split()[:2] == ["parked_at", "key"]


async def test_a_bad_url_fails_with_one_clear_line() -> None:
    nobody = f"nats://127.0.0.1:{free_port()}"
    commands = (
        ["snapshot"], ["workers", "ls"], ["workers", "for-task", "trace"], ["strikes"],
        ["dead-letters"], ["clear"], ["tasks", "trace"], ["strike", "some_task"],
    )  # fmt: skip
    # The processes run at once: each is mostly interpreter start-up.
    results = await asyncio.gather(*(cli(*command, "--url", nobody) for command in commands))
    for command, (code, _, err) in zip(commands, results, strict=True):
        assert code == 1, (command, err)
        assert err.splitlines() == [
            f"Error: cannot connect to NATS at {nobody} -- is nats-server running there? "
            "Check --url / $DOCKET_URL"
        ], command

    # A Redis URL (left from docket) or memory:// is a usage error: 2, one line, the fix.
    for url, complaint in (
        ("redis://localhost:6379/0", "is a Redis URL; docket-nats needs a NATS one"),
        ("memory://here", "The memory:// URL scheme is not supported"),
    ):
        code, _, err = await cli("snapshot", "--url", url)
        (line,) = err.splitlines()
        assert code == 2 and complaint in line and "see 'docket-nats snapshot --help'" in line


async def test_usage_errors_are_one_line_with_the_fix() -> None:
    for arguments, complaint in (
        (["worker", "--concurrency", "many"], "'--concurrency'"),
        (["snapshot", "--format", "xml"], "'--format'"),
        (["tasks", "nap"], "No such command 'nap'"),
        (["nap"], "No such command 'nap'"),
    ):
        code, out, err = await cli(*arguments)
        (line,) = err.splitlines()
        assert code == 2 and line.startswith("Error: ") and complaint in line, err
        assert "--help'" in line and out == ""


async def test_a_setting_that_cannot_work_is_one_line_naming_it() -> None:
    for arguments, setting in (
        (["worker", "--concurrency", "0"], "concurrency must be at least 1"),
        (["worker", "--redelivery-timeout", "0"], "redelivery_timeout must be longer than 0"),
    ):
        code, out, err = await cli(*arguments, "--url", "memory://settings")
        (line,) = err.splitlines()
        assert code == 2 and line.startswith("Error: ") and setting in line, err
        assert "Traceback" not in err and out == ""


async def test_help_shows_examples_for_every_command() -> None:
    for command in (
        [], ["worker"], ["snapshot"], ["strike"], ["restore"], ["strikes"], ["watch"],
        ["workers"], ["clear"], ["dead-letters"], ["tasks", "trace"], ["server"], ["dashboard"],
    ):  # fmt: skip
        code, out, err = await cli(*command, "--help", env={"COLUMNS": "120"})
        assert code == 0, err
        assert "Example" in out and "docket-nats" in out, command
    code, out, _ = await cli("--help")
    assert "dashboard" in out  # issue 13's command is listed


async def test_shell_completion() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    for words, expected in (("docket-nats wor", ["worker", "workers"]),):
        process = await asyncio.create_subprocess_exec(
            SCRIPT,
            stdout=asyncio.subprocess.PIPE,
            env={
                **environment,
                "_DOCKET_NATS_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": "1",
            },
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert out.decode().split() == expected
    # Typer detects the shell from the process tree (shellingham) unless told not
    # to; under pytest the tree may hold no shell ("Shell  not supported"), so the
    # shell is named, the way Typer's own tests do.
    code, out, _ = await cli(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert code == 0 and "_DOCKET_NATS_COMPLETE=complete_bash" in out


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


async def test_watch_on_a_terminal_is_a_live_view_with_a_progress_bar(
    docket: Docket, nats_url: str, worker: Worker
) -> None:
    go = asyncio.Event()

    async def stepping(progress: Progress = Progress()) -> None:
        await progress.set_total(4)
        await progress.increment(2)
        await progress.set_message("halfway")
        await go.wait()
        await progress.increment(2)

    await docket.add(stepping, key="stepping")()
    running = asyncio.create_task(worker.run_forever())
    main, terminal = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", "watch", "stepping", *target(docket, nats_url),
        stdin=asyncio.subprocess.DEVNULL, stdout=terminal, stderr=asyncio.subprocess.PIPE,
        env={**environment, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(terminal)
    screen: list[str] = []

    def read() -> None:  # until the watcher closes its terminal
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                return
            if not chunk:
                return
            screen.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        async with asyncio.timeout(30):
            while "2/4" not in strip_ansi("".join(screen)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            go.set()
            await process.wait()
        await asyncio.to_thread(reader.join, 10)
    finally:
        os.close(main)
        worker.stop()
        await running
    assert process.returncode == 0
    shown = strip_ansi("".join(screen))
    assert "stepping" in shown and "running" in shown and worker.name in shown
    assert "━" in shown and "halfway" in shown  # Rich's progress bar and message
    assert "4/4" in shown and "completed" in shown


async def test_server_runs_the_embedded_nats_server(tmp_path: Path) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    environment["DOCKET_SERVER_STORE"] = str(tmp_path / "store")
    process = await asyncio.create_subprocess_exec(
        SCRIPT, "server", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=environment,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):  # until the server listens
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        async with Docket(name="served", url=f"nats://127.0.0.1:{port}") as docket:
            execution = await docket.add(tasks.trace)("served")
            assert execution.key
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert (tmp_path / "store" / "jetstream").is_dir()
