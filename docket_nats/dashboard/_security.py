"""Who may use the dashboard: the bind rule, the Host check, the token and the
same-origin check.

The Host header must name this dashboard (loopback names, or the hosts it was
told of): a page of another site whose name was made to resolve to 127.0.0.1
(DNS rebinding) sends its own name, and is refused. Every response forbids
framing (clickjacking of the action buttons).

With a token, every request needs it (pages show task arguments too): the
`X-Docket-Token` header, or the cookie the login form or a `?token=` link sets
(HttpOnly, SameSite=Strict). Actions (POST) also need their Origin (or, without
one, Referer) to be this server, so another site cannot post a form here with
the browser's cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "X-Docket-Token"
TOKEN_COOKIE = "docket_dashboard_token"
TOKEN_ENVIRONMENT = "DOCKET_DASHBOARD_TOKEN"
# Host names every dashboard answers to (with any port).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
FRAMING_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost may resolve anywhere
        return False


def refusal_to_bind(host: str, token: str | None) -> str | None:
    """Why serving on `host` is refused (None: it is fine)."""
    if token or is_loopback(host):
        return None
    return (
        f"--host {host} would open the dashboard beyond this machine without a token: "
        f"give --token (or ${TOKEN_ENVIRONMENT}), or bind 127.0.0.1"
    )


def presented_token(request: Request) -> str | None:
    return request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def same_origin(request: Request) -> bool:
    """The request comes from a page of this server (Origin, else Referer, vs Host)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or not host or source == "null":
        return False
    return urlsplit(source).netloc == host


def local_path(wanted: str) -> str:
    """`wanted` if it is a path on this server, else "/": a `next` field never
    sends the browser to another site (`//host` and `/\\host` are other sites)."""
    if not wanted.startswith("/") or wanted[1:2] in ("/", "\\"):
        return "/"
    return wanted


def host_name(host_header: str) -> str:
    """The name in a Host header, lower case, without its port (`[::1]` kept whole)."""
    name = host_header.strip().lower()
    if name.startswith("["):
        return name.split("]", 1)[0] + "]"
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def allowed_host_names(hosts: Iterable[str]) -> frozenset[str]:
    """The names a dashboard answers to: loopback, and `hosts` (an IPv6 address
    in brackets, as a Host header carries it)."""
    names: set[str] = set(LOOPBACK_HOSTS)
    for host in hosts:
        name = host.strip().lower()
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        names.add(host_name(name))
    return frozenset(names)


class HostGuard:
    """ASGI middleware: refuses (400) a request whose Host is not allowed, and adds
    the no-framing headers to every response."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def framed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *FRAMING_HEADERS]
            await send(message)

        headers = dict(scope.get("headers", []))
        given = headers.get(b"host", b"").decode("latin-1")
        if host_name(given) not in self.allowed:
            refusal = PlainTextResponse(
                f"refused: the Host {given!r} is not this dashboard's "
                "(serve with --allowed-host NAME for a proxy or a public name)",
                status_code=400,
            )
            await refusal(scope, receive, framed)
            return
        await self.app(scope, receive, framed)
