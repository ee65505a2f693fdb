"""docket's command line, run as a user runs it: `python -m docket_nats ...` (or the
`docket-nats` script, or main(argv)) against a real server, with docket's option
names, environment variables, value syntax and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cli_parity_tasks
import pytest
import typer
from http_probe import http_get

import docket_nats
from docket_nats import Docket, Worker, tasks
from docket_nats.cli import main
from docket_nats.cli._common import duration

pytestmark = pytest.mark.timeout(120)

TESTS = Path(__file__).parent


async def cli(
    *arguments: str, env: Mapping[str, str] | None = None, program: str | None = None
) -> tuple[int, str, str]:
    """Run the command in a process of its own, without the caller's $DOCKET_*
    variables but with `env`; its exit status, stdout and stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environment.update(env or {})
    command = [program] if program else [sys.executable, "-m", "docket_nats"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def target(docket: Docket, nats_url: str) -> list[str]:
    return ["--url", nats_url, "--docket", docket.name]


async def eventually(condition: Callable[[], bool], within: float = 10) -> None:
    """Poll `condition` (bounded) for state another process changes."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def answering(port: int, path: str = "/") -> tuple[int, str]:
    """GET `path` once the endpoint listens (bounded: the worker process is starting)."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await http_get(port, path)
            except (ConnectionRefusedError, OSError):
                await asyncio.sleep(0.05)


async def only_here(order: int, priority: str = "low") -> None:
    """Registered in the test's process only: unknown to the CLI's worker."""


# -- worker ----------------------------------------------------------------------


async def test_worker_reads_dockets_environment_variables(docket: Docket, nats_url: str) -> None:
    docket.register(only_here)
    settings = await docket.add(cli_parity_tasks.settings)()
    flaky = await docket.add(cli_parity_tasks.flaky)()
    unknown = await docket.add(only_here)(7, priority="high")
    code, out, err = await cli(
        "worker",
        "--until-finished",
        "--minimum-check-interval",
        "0.05",
        env={
            "DOCKET_URL": nats_url,
            "DOCKET_NAME": docket.name,
            "DOCKET_TASKS": "cli_parity_tasks:tasks docket_nats.tasks:standard_tasks",
            "DOCKET_WORKER_NAME": "from-the-environment",
            "DOCKET_WORKER_CONCURRENCY": "3",
            "DOCKET_WORKER_REDELIVERY_TIMEOUT": "2m",
            "DOCKET_WORKER_SHUTDOWN_GRACE": "00:45",
            "DOCKET_WORKER_MESSAGE_BATCH": "50",
            "DOCKET_WORKER_RECONNECTION_DELAY": "7s",
            "DOCKET_WORKER_SCHEDULING_RESOLUTION": "1:00:00",
            "DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS": "false",
            "DOCKET_WORKER_ENABLE_INTERNAL_INSTRUMENTATION": "yes",
            "DOCKET_FALLBACK_TASK": "cli_parity_tasks:fallback",
            "DOCKET_WORKER_DEPENDENCIES": "cli_parity_tasks:dependencies",
            "DOCKET_LOGGING_FORMAT": "json",
            "DOCKET_LOGGING_LEVEL": "WARNING",
        },
    )
    assert code == 0, err
    # WARNING and up only, as JSON: the failed first attempt of `flaky`.
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(line["level"] in ("warning", "error") for line in lines)
    timeout = timedelta(seconds=10)
    assert await settings.get_result(timeout=timeout) == {
        "name": "from-the-environment",
        "concurrency": 3,
        "redelivery_timeout": 120.0,
        "shutdown_grace": 45.0,
        "message_batch": 50,
        "reconnection_delay": 7.0,
        "scheduling_resolution": 3600.0,
        "schedule_automatic_tasks": False,
        "enable_internal_instrumentation": True,
    }
    assert await flaky.get_result(timeout=timeout) == 2  # the worker's Retry(attempts=2)
    assert await unknown.get_result(timeout=timeout) == {
        "args": [7],
        "kwargs": {"priority": "high"},
    }


async def test_worker_options_beat_the_environment(docket: Docket, nats_url: str) -> None:
    settings = await docket.add(cli_parity_tasks.settings)()
    doubled = await docket.add(cli_parity_tasks.double)(21)
    code, _, err = await cli(
        "worker",
        *target(docket, nats_url),
        "--tasks",
        "cli_parity_tasks:tasks",
        "--name",
        "from-the-flags",
        "--concurrency=4",
        "--redelivery-timeout",
        "01:30",
        "--shutdown-grace",
        "5",
        "--message-batch",
        "9",
        "--reconnection-delay",
        "2s",
        "--scheduling-resolution",
        "1m",
        "--no-schedule-automatic-tasks",
        "--no-enable-internal-instrumentation",
        "--minimum-check-interval",
        "0.05",
        "--until-finished",
        "--logging-level",
        "ERROR",
        env={
            "DOCKET_WORKER_NAME": "from-the-environment",
            "DOCKET_WORKER_CONCURRENCY": "3",
            "DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS": "true",
            "DOCKET_WORKER_ENABLE_INTERNAL_INSTRUMENTATION": "true",
            "DOCKET_TASKS": "no_such_module:tasks",
        },
    )
    assert code == 0, err
    assert await doubled.get_result(timeout=timedelta(seconds=10)) == 42
    assert await settings.get_result(timeout=timedelta(seconds=10)) == {
        "name": "from-the-flags",
        "concurrency": 4,
        "redelivery_timeout": 90.0,
        "shutdown_grace": 5.0,
        "message_batch": 9,
        "reconnection_delay": 2.0,
        "scheduling_resolution": 60.0,
        "schedule_automatic_tasks": False,
        "enable_internal_instrumentation": False,
    }


async def test_worker_serves_a_healthcheck_and_metrics_until_sigterm(
    docket: Docket, nats_url: str
) -> None:
    healthcheck, metrics = free_port(), free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    environment["DOCKET_WORKER_HEALTHCHECK_PORT"] = str(healthcheck)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket_nats",
        "worker",
        *target(docket, nats_url),
        "--metrics-port",
        str(metrics),
        "--http-host",
        "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        assert await answering(healthcheck) == (200, "OK")
        assert await http_get(healthcheck, "/any/path") == (200, "OK")
        # Metrics come up once the docket is connected, perhaps a moment later.
        status, body = await answering(metrics, "/metrics")
        assert status == 200 and "docket_tasks_added" in body
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()


def catches_sigterm(pid: int) -> bool:
    """The process has a handler of its own for SIGTERM (Linux: SigCgt in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    (caught,) = re.findall(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


async def test_sigterm_while_the_worker_starts_is_a_clean_stop() -> None:
    """No server answers, so the worker is still starting (connecting) when the
    signal comes: it stops cleanly (0), not by the default action (-15)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    nobody = f"nats://127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docket_nats", "worker", "--url", nobody,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    try:
        for _ in range(300):  # until the handler is in (interpreter start-up first)
            if catches_sigterm(process.pid):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the worker never installed a SIGTERM handler while starting")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()


@pytest.mark.parametrize(
    ("arguments", "env", "status", "complaint"),
    [
        (["--concurrency", "many"], {}, 2, "--concurrency"),
        (["--redelivery-timeout", "1:2:3:4"], {}, 2, "invalid duration"),
        (["--reconnection-delay", "soon"], {}, 2, "invalid duration"),
        (["--message-batch", "0"], {}, 2, "minimum of 1"),
        (["--logging-level", "LOUD"], {}, 2, "--logging-level"),
        (["--logging-format", "xml"], {}, 2, "--logging-format"),
        (["--no-such-option"], {}, 2, "No such option: --no-such-option"),
        ([], {"DOCKET_WORKER_CONCURRENCY": "many"}, 2, "--concurrency"),
        ([], {"DOCKET_WORKER_SCHEDULE_AUTOMATIC_TASKS": "maybe"}, 2, "valid boolean"),
        ([], {"DOCKET_LOGGING_LEVEL": "LOUD"}, 2, "--logging-level"),
        ([], {"DOCKET_LOGGING_FORMAT": "xml"}, 2, "--logging-format"),
        ([], {"DOCKET_REPLICAS": "three"}, 2, "--replicas"),
        (["--tasks", "no_such_module:tasks"], {}, 1, "no_such_module"),
        (["--fallback-task", "cli_parity_tasks:missing"], {}, 1, "missing"),
        (["--dependencies", "no_such_module:deps"], {}, 1, "no_such_module"),
    ],
)
async def test_worker_refuses_bad_values_with_dockets_exit_codes(
    docket: Docket,
    nats_url: str,
    arguments: list[str],
    env: dict[str, str],
    status: int,
    complaint: str,
) -> None:
    code, _, err = await cli(
        "worker", *target(docket, nats_url), "--until-finished", *arguments, env=env
    )
    assert code == status and complaint in err, err


# -- strike / restore --------------------------------------------------------------


async def test_strike_and_restore_take_dockets_arguments(docket: Docket, nats_url: str) -> None:
    def rules() -> list[str]:
        return sorted(str(rule) for rule in docket.strike_list.rules())

    environment = {"DOCKET_URL": nats_url, "DOCKET_NAME": docket.name}
    code, out, err = await cli("strike", "process_order", env=environment)
    assert (code, out.splitlines()[0]) == (0, "Striking process_order"), err
    code, out, _ = await cli("strike", "", "customer_id", "==", "12345", env=environment)
    assert (code, out.splitlines()[0]) == (0, "Striking (all tasks) customer_id == '12345'")
    code, out, _ = await cli("strike", "process_order", "amount", ">=", "int:1000", env=environment)
    assert (code, out.splitlines()[0]) == (0, "Striking process_order amount >= 1000")
    # An option between the words, as Click allows; OP defaults to ==, VALUE to None.
    code, out, _ = await cli("strike", "ship", "--docket", docket.name, "fast", env=environment)
    assert (code, out.splitlines()[0]) == (0, "Striking ship fast == None")
    code, out, _ = await cli("strike", "wrap", "*", "==", "x", env=environment)  # '*': none
    assert (code, out.splitlines()[0]) == (0, "Striking wrap")
    await eventually(lambda: len(rules()) == 5)
    assert rules() == [
        "*(customer_id == '12345')",
        "process_order(*)",
        "process_order(amount >= 1000)",
        "ship(fast == None)",
        "wrap(*)",
    ]

    for arguments in (
        ["process_order"],
        ["*", "customer_id", "==", "12345"],
        ["process_order", "amount", ">=", "int:1000"],
        ["ship", "fast"],
        ["wrap"],
    ):
        code, out, err = await cli("restore", *arguments, env=environment)
        assert code == 0 and out.startswith("Restoring "), err
    await eventually(lambda: not rules())


@pytest.mark.parametrize(
    ("arguments", "status", "complaint"),
    [
        ([], 2, "Must provide either a function and/or a parameter"),
        (["*", "*"], 2, "Must provide either a function and/or a parameter"),
        (["task", "amount", "~", "1"], 2, "unknown strike operator"),
        (["task", "amount", "==", "int:lots"], 1, "int"),
        (["task", "amount", "==", "no_such_module.Type:1"], 1, "no_such_module.Type"),
        (["task", "--url", "memory://here"], 2, "The memory:// URL scheme is not supported"),
    ],
)
async def test_strike_refuses_like_docket(
    docket: Docket, nats_url: str, arguments: list[str], status: int, complaint: str
) -> None:
    code, _, err = await cli(
        "strike", *arguments, env={"DOCKET_URL": nats_url, "DOCKET_NAME": docket.name}
    )
    assert code == status and complaint in err, err
    assert docket.strike_list.rules() == []


# -- tasks trace / fail / sleep ------------------------------------------------------


async def test_builtin_tasks_with_dockets_delays(docket: Docket, nats_url: str) -> None:
    for arguments, value, delay in (
        (["trace", "hello", "--delay", "5m"], "hello", timedelta(minutes=5)),
        (["fail", "--delay", "1h"], "Howdy!", timedelta(hours=1)),
        (["sleep", "2.5", "--delay", "01:30"], 2.5, timedelta(seconds=90)),
        (["sleep", "--delay=0:10:00"], 1.0, timedelta(minutes=10)),
        (["trace", "--delay", "45"], "Howdy!", timedelta(seconds=45)),
    ):
        before = datetime.now(UTC)
        code, out, err = await cli("tasks", *arguments, *target(docket, nats_url))
        assert code == 0, err
        match = re.fullmatch(rf"Added {arguments[0]} task '(.+)' to the docket '(.+)'\n", out)
        assert match is not None and match[2] == docket.name, out
        execution = await docket.get_execution(match[1])
        assert execution is not None and execution.function_name == arguments[0]
        assert execution.args == (value,)
        assert before + delay <= execution.when <= datetime.now(UTC) + delay

    for arguments in (["trace", "--delay", "soon"], ["sleep", "a-while"], ["nap"], []):
        code, _, _ = await cli("tasks", *arguments, *target(docket, nats_url))
        assert code == 2, arguments


# -- observing: workers, snapshot, watch, clear --------------------------------------


async def test_workers_ls_and_for_task(docket: Docket, nats_url: str, live_worker: Worker) -> None:
    code, out, err = await cli("workers", "ls", *target(docket, nats_url))
    assert code == 0, err
    assert f"Workers in Docket: {docket.name}" in out and live_worker.name in out

    code, out, err = await cli(
        "workers", "for-task", "trace", env={"DOCKET_URL": nats_url, "DOCKET_NAME": docket.name}
    )
    assert code == 0 and live_worker.name in out, err
    code, out, _ = await cli("workers", "for-task", "nobody-runs-this", *target(docket, nats_url))
    assert code == 0 and live_worker.name not in out

    code, _, err = await cli("workers", "ls", "--url", "memory://x", "--docket", docket.name)
    assert code == 2 and "The memory:// URL scheme is not supported by the CLI." in err


async def test_snapshot_registers_task_collections_and_shows_stats(
    docket: Docket, nats_url: str
) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    for number in range(3):
        await docket.add(tasks.trace, later)(f"later {number}")
    await docket.add(tasks.sleep, later + timedelta(minutes=1))(1.0)

    code, out, err = await cli(
        "snapshot", "--tasks", "cli_parity_tasks:tasks", "--stats", *target(docket, nats_url)
    )
    assert code == 0, err
    assert f"Docket: '{docket.name}'" in out and "0 workers, 0/4 running" in out
    assert "Task Count Statistics by Function" in out
    (trace_line,) = [line for line in out.splitlines() if line.startswith("trace ")]
    assert trace_line.split()[:4] == ["trace", "3", "0", "3"]  # total, running, queued

    code, out, err = await cli(
        "snapshot", "--stats", "--json", *target(docket, nats_url),
        env={"DOCKET_TASKS": "cli_parity_tasks:tasks"},
    )  # fmt: skip
    assert code == 0, err
    stats = {row["function"]: row for row in json.loads(out)["stats"]}
    assert (stats["trace"]["total"], stats["sleep"]["queued"]) == (3, 1)

    code, _, err = await cli(
        "snapshot", *target(docket, nats_url), env={"DOCKET_TASKS": "no_such_module:tasks"}
    )
    assert code == 1 and "no_such_module" in err


async def test_watch_takes_short_flags_and_dockets_url_variable(
    docket: Docket, nats_url: str, worker: Worker
) -> None:
    execution = await docket.add(tasks.trace, key="watched")("watch me")
    await worker.run_until_finished()
    code, out, err = await cli("watch", "watched", "-u", nats_url, "-d", docket.name)
    assert code == 0, err
    assert out.splitlines()[-1] == f"completed on {worker.name}"

    code, out, err = await cli(
        "watch", execution.key, env={"DOCKET_REDIS_URL": nats_url, "DOCKET_NAME": docket.name}
    )
    assert code == 0 and out.splitlines()[-1] == f"completed on {worker.name}", err


async def test_clear_with_the_environment(docket: Docket, nats_url: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await docket.add_many(docket.call(tasks.trace, later)(str(n)) for n in range(3))
    code, out, err = await cli("clear", env={"DOCKET_URL": nats_url, "DOCKET_NAME": docket.name})
    assert (code, out) == (0, f"Cleared 3 tasks from docket '{docket.name}'\n"), err
    assert (await docket.snapshot()).total_tasks == 0


# -- the program itself ---------------------------------------------------------------


async def test_the_installed_script_and_module_agree() -> None:
    script = str(Path(sys.executable).with_name("docket-nats"))
    for program in (script, None):
        code, out, _ = await cli("version", program=program)
        assert (code, out.strip()) == (0, docket_nats.__version__)
        code, out, _ = await cli("--help", program=program)
        assert code == 0
        for command in ("worker", "strike", "restore", "tasks", "snapshot", "watch", "workers"):
            assert command in out
        code, _, err = await cli(program=program)  # no command: a usage error, exit 2
        assert code == 2 and "Missing command" in err


def test_main_takes_argv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == docket_nats.__version__
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--redelivery-timeout", "later"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("01:30", 90),
        ("1:00:05", 3605),
        ("0.25", 0.25),  # ours also takes fractions
    ],
)
def test_durations_as_docket_writes_them(text: str, seconds: float) -> None:
    assert duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "5d", "1:2:3:4", "a:b"])
def test_durations_docket_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        duration(text)


# -- URLs and connections ---------------------------------------------------------------


async def test_an_unreachable_server_fails_a_command_with_status_1() -> None:
    # As docket's commands when Redis is down: an error and 1, not a hang.
    port = free_port()  # nothing listens there
    code, _, err = await cli("clear", "--url", f"nats://127.0.0.1:{port}")
    assert code == 1 and f"cannot connect to NATS at nats://127.0.0.1:{port}" in err


async def test_a_redis_url_is_refused_at_once() -> None:
    # docket's default URL, left in $DOCKET_URL by a docket deployment.
    for command in (["clear"], ["watch", "some-key"], ["worker"]):
        code, _, err = await cli(*command, env={"DOCKET_URL": "redis://localhost:6379/0"})
        assert code == 2 and "is a Redis URL" in err, command


async def test_dockets_standard_task_collection_means_ours(docket: Docket, nats_url: str) -> None:
    traced = await docket.add(tasks.trace)("standard")
    code, _, err = await cli(
        "worker", *target(docket, nats_url), "--tasks", "docket.tasks:standard_tasks",
        "--until-finished", "--minimum-check-interval", "0.05",
    )  # fmt: skip
    assert code == 0, err
    assert await traced.get_result(timeout=timedelta(seconds=10)) is None
