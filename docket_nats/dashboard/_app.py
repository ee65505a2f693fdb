"""`docket_nats.dashboard.app(docket)`: the dashboard as an ASGI app (Starlette).

Run on its own (`docket-nats dashboard`) its lifespan starts and stops the
shared live view; mounted inside another app (whose router does not run a
mounted app's lifespan) the view starts with the first request instead, and the
host stops it with `await dashboard.aclose()` (or `async with dashboard:`).
The Docket is the caller's: open it before serving and close it after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..docket import Docket
from . import _pages as pages
from ._actions import form_of, perform
from ._html import page, text
from ._live import Live
from ._security import (
    TOKEN_COOKIE,
    HostGuard,
    allowed_host_names,
    local_path,
    presented_token,
    same_origin,
    token_matches,
)
from ._state import Dashboard, dashboard_of, here, root_of

STATIC = Path(__file__).parent / "static"
# An idle event stream sends a comment this often, so a closed page is noticed.
KEEPALIVE_SECONDS = 15.0

Endpoint = Callable[[Request], Awaitable[Response]]


class DashboardApp(Starlette):
    """The dashboard's ASGI app; `aclose()` (or leaving `async with`) stops its
    live view, for a host that mounts it (a mounted app's lifespan never runs)."""

    async def aclose(self) -> None:
        starter: _Starter = self.state.starter
        await starter.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def app(
    docket: Docket,
    *,
    read_only: bool = False,
    token: str | None = None,
    refresh: float = 0.5,
    allowed_hosts: Iterable[str] = (),
) -> DashboardApp:
    """The dashboard of an open `docket`: pages, live updates and (unless
    `read_only`) actions. With a `token`, every request must present it (see
    docs: the `X-Docket-Token` header, or the cookie set by /login or a
    `?token=` link). `refresh`: seconds between two reads of the counts.
    `allowed_hosts`: the names (Host header) it answers to besides localhost,
    127.0.0.1 and [::1]: a proxy's public name, a non-loopback bind."""
    dashboard = Dashboard(docket, Live(docket, refresh), read_only, token or None)
    starting = _Starter(dashboard.live)

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            refusal = _check(request, dashboard)
            if refusal is not None:
                return refusal
            try:
                await starting.ensure()
            except Exception as error:  # NATS away, the docket's streams missing
                return PlainTextResponse(
                    f"the dashboard cannot read the docket: {error or type(error).__name__}",
                    status_code=503,
                )
            return await endpoint(request)

        return checked

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        await starting.ensure()
        try:
            yield
        finally:
            await starting.stop()

    routes = [
        Route("/", guarded(pages.overview)),
        Route("/executions", guarded(pages.executions)),
        Route("/execution", guarded(pages.one_execution)),
        Route("/scheduled", guarded(pages.scheduled)),
        Route("/workers", guarded(pages.workers)),
        Route("/strikes", guarded(pages.strikes)),
        Route("/dead-letters", guarded(pages.dead_letters)),
        Route("/events", guarded(events)),
        Route("/actions/{name}", guarded(perform), methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    guard = Middleware(HostGuard, allowed=allowed_host_names(allowed_hosts))
    application = DashboardApp(routes=routes, lifespan=lifespan, middleware=[guard])
    application.state.dashboard = dashboard
    application.state.starter = starting
    return application


class _Starter:
    """Starts the live view once, whichever comes first: lifespan or a request."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.lock = asyncio.Lock()
        self.started = False

    async def ensure(self) -> None:
        if self.started:
            return
        async with self.lock:
            if self.started:
                return
            try:
                await self.live.start()
                await self.live.count()
            except BaseException:
                # Nothing half-started stays behind: the next request starts afresh.
                await self.live.stop()
                raise
            self.started = True

    async def stop(self) -> None:
        async with self.lock:
            if self.started:
                await self.live.stop()
                self.started = False


def _check(request: Request, dashboard: Dashboard) -> Response | None:
    """The refusal for a request that may not go on, else None."""
    posting = request.method == "POST"
    if dashboard.token is not None:
        given = request.query_params.get("token")
        if given is not None and not posting:
            return _login_redirect(request, given, dashboard.token)
        if not token_matches(presented_token(request), dashboard.token):
            if posting:
                return PlainTextResponse("the dashboard's token is required", status_code=403)
            target = urlencode({"next": here(request)})
            return RedirectResponse(f"{root_of(request)}/login?{target}", status_code=303)
    if posting:
        if dashboard.read_only:
            return PlainTextResponse("the dashboard is read-only", status_code=403)
        if not same_origin(request):
            return PlainTextResponse(
                "refused: the request does not come from this dashboard (Origin/Referer)",
                status_code=403,
            )
    return None


def _login_redirect(request: Request, given: str, token: str) -> Response:
    """A `?token=` link: remember the token in a cookie and drop it from the URL."""
    if not token_matches(given, token):
        return PlainTextResponse("wrong token", status_code=403)
    query = [(name, value) for name, value in request.query_params.multi_items() if name != "token"]
    target = str(request.url.path) + (f"?{urlencode(query)}" if query else "")
    response = RedirectResponse(target, status_code=303)
    _remember(response, token, request)
    return response


def _remember(response: Response, token: str, request: Request) -> None:
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=root_of(request) or "/",
    )


async def login(request: Request) -> Response:
    dashboard = dashboard_of(request)
    root = root_of(request)
    if dashboard.token is None:
        return RedirectResponse(f"{root}/", status_code=303)
    message = None
    if request.method == "POST":
        if not same_origin(request):
            return PlainTextResponse("refused: not from this dashboard", status_code=403)
        form = await form_of(request)
        if token_matches(form.get("token"), dashboard.token):
            path = local_path(form.get("next", "/"))
            response = RedirectResponse(f"{root}{path}", status_code=303)
            _remember(response, dashboard.token, request)
            return response
        message = "wrong token"
    wanted = request.query_params.get("next", "/")
    body = (
        f'<form method="post" action="{text(root)}/login">'
        f'<input type="hidden" name="next" value="{text(wanted)}">'
        '<label>token <input type="password" name="token" autofocus></label> '
        '<button type="submit">Log in</button></form>'
    )
    return HTMLResponse(
        page(root, dashboard.docket.name, "Log in", body, message=message),
        status_code=403 if message else 200,
    )


async def events(request: Request) -> Response:
    """Server-sent events: the live summary whenever it changes (one view for all),
    with the executions of `?key=` (repeated) if the page names any."""
    live = dashboard_of(request).live
    keys = tuple(request.query_params.getlist("key"))

    async def stream() -> AsyncIterator[str]:
        # Listening starts with the stream: a client gone before it starts
        # leaves no listener behind.
        listening = live.listen(keys)
        try:
            while True:
                try:
                    summary = await asyncio.wait_for(listening.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if summary is None:  # the dashboard stops
                    return
                yield f"data: {summary}\n\n"
        finally:
            live.leave(listening)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
