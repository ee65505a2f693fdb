"""Who may use the dashboard: the bind rule, the token and the same-origin check.

With a token, every request needs it (pages show task arguments too): the
`X-Docket-Token` header, or the cookie the login form or a `?token=` link sets
(HttpOnly, SameSite=Strict). Actions (POST) also need their Origin (or, without
one, Referer) to be this server, so another site cannot post a form here with
the browser's cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request

TOKEN_HEADER = "X-Docket-Token"
TOKEN_COOKIE = "docket_dashboard_token"
TOKEN_ENVIRONMENT = "DOCKET_DASHBOARD_TOKEN"


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
