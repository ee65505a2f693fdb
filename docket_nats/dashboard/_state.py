"""What every request handler of the dashboard gets: the docket, the shared live
view, and the mode it was started in."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ..docket import Docket
from ._live import Live


@dataclass(frozen=True)
class Dashboard:
    docket: Docket
    live: Live
    read_only: bool
    token: str | None

    @property
    def actions(self) -> bool:
        """Whether pages show action buttons."""
        return not self.read_only


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


def root_of(request: Request) -> str:
    """Where the app is mounted ('' at the top): links stay inside it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def here(request: Request) -> str:
    """This request's path inside the app, with its query: what a `next` field
    carries (Starlette's `url.path` already includes the mount's root)."""
    path = request.url.path
    root = root_of(request)
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    query = request.url.query
    return path + (f"?{query}" if query else "")
