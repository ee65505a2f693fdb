"""The web dashboard: see and steer a docket from the browser, live.

    from docket_nats.dashboard import app
    async with Docket(name="orders", url="nats://...") as docket:
        web = app(docket, read_only=False, token=None)   # an ASGI app; mount it anywhere

Needs the `dashboard` extra (`pip install 'docket-nats[dashboard]'`); the command
`docket-nats dashboard` serves it with uvicorn.
"""

from ._app import app

__all__ = ["app"]
