"""`docket-nats dashboard`: serve the web dashboard (docket_nats/dashboard/) with uvicorn.

Binds 127.0.0.1 unless told otherwise; any other address needs a token, or the
command refuses to start (exit 2, as other settings errors).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from ._common import CommandError, Target, docket_command, docket_from, register_collections
from ._output import say

# Not imported from dashboard/_security.py: that module needs Starlette, and
# this one loads with every command, extra installed or not.
TOKEN_ENVIRONMENT = "DOCKET_DASHBOARD_TOKEN"


def register(app: typer.Typer) -> None:
    app.command(
        help="Serve the web dashboard: counts, executions, schedule, workers, strikes and "
        "dead letters, live; with actions (cancel, run now, retry, strike) unless --read-only. "
        "Needs the 'dashboard' extra: pip install 'docket-nats[dashboard]'.",
        epilog="Examples: docket-nats dashboard; DOCKET_DASHBOARD_TOKEN=<secret> docket-nats "
        "dashboard --host 10.0.0.5 --tasks myapp.tasks:tasks (the token from the environment, "
        "not the command line, where ps shows it)",
    )(docket_command()(dashboard))


def dashboard(
    target: Target,
    host: Annotated[
        str, typer.Option(envvar="DOCKET_DASHBOARD_HOST", help="address to bind")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DOCKET_DASHBOARD_PORT", help="port")] = 8470,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", envvar="DOCKET_DASHBOARD_READ_ONLY", help="show, never act (POST: 403)"
        ),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENVIRONMENT,
            help="required by every request (header X-Docket-Token, or the cookie /login or a "
            "?token= link sets); needed to bind anything but loopback",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            envvar="DOCKET_DASHBOARD_ALLOWED_HOSTS",
            metavar="NAME",
            help="a Host name the dashboard answers to besides localhost, 127.0.0.1, [::1] "
            "and a non-loopback --host: a proxy's public name (repeatable; the variable "
            "takes several, space-separated); any other Host is refused (DNS rebinding)",
        ),
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            envvar="DOCKET_TASKS",
            metavar="MODULE:ATTR",
            help="task collections: 'run now' and the retries (of a failed execution, a dead "
            "letter) read arguments back through the task's signature (repeatable)",
        ),
    ] = None,
) -> None:
    try:
        import uvicorn

        from ..dashboard import app
        from ..dashboard._security import is_loopback, refusal_to_bind
    except ImportError as error:
        raise CommandError(
            f"the dashboard needs its extra ({error})",
            status=1,
            fix="pip install 'docket-nats[dashboard]'",
        ) from None
    refusal = refusal_to_bind(host, token)
    if refusal is not None:
        raise CommandError(refusal)
    allowed = [*(allowed_host or []), *([] if is_loopback(host) else [host])]
    options = {"read_only": read_only, "token": token, "allowed_hosts": allowed}
    asyncio.run(_serve(target, tasks or [], host, port, options, uvicorn, app))


async def _serve(
    target: Target, collections: list[str], host: str, port: int, options: dict[str, Any],
    uvicorn: Any, app: Any,
) -> None:  # fmt: skip
    async with docket_from(target, lasting=True) as docket:
        register_collections(docket, collections)
        config = uvicorn.Config(
            app(docket, **options),
            host=host,
            port=port,
            log_level="warning",
            # Open event streams would otherwise hold the stop until browsers leave.
            timeout_graceful_shutdown=1,
        )
        say(f"docket-nats dashboard of {docket.name!r} on http://{host}:{port}/")
        await uvicorn.Server(config).serve()
