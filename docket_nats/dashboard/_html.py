"""HTML built from Python strings: every value that came from a task, a worker or
a request passes through `text` (html.escape, quotes included) before it is
placed; markup is written only here and in the page modules, never taken from
data. No template engine: the pages are small, and this keeps the dashboard
extra at Starlette and uvicorn (Jinja2 is not one of Starlette's dependencies).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

STATES = ("scheduled", "queued", "running", "completed", "failed", "cancelled")


def text(value: Any) -> str:
    """Any value as escaped text (None as a dash)."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        value = value.isoformat(timespec="seconds")
    return html.escape(str(value), quote=True)


def link(root: str, path: str, label: Any, **query: Any) -> str:
    given = {name: value for name, value in query.items() if value not in (None, "")}
    href = f"{root}{path}" + (f"?{urlencode(given)}" if given else "")
    return f'<a href="{text(href)}">{text(label)}</a>'


def execution_link(root: str, key: str) -> str:
    return link(root, "/execution", key, key=key)


def live_field(key: str, field: str, inner: str, revision: int, tag: str = "span") -> str:
    """A value of `key` that dashboard.js replaces from the event stream, once the
    key's record is newer than `revision` (what this page was rendered from)."""
    return (
        f'<{tag} data-live-key="{text(key)}" data-field="{text(field)}" '
        f'data-revision="{text(revision)}">{inner}</{tag}>'
    )


def state_badge(state: str) -> str:
    return f'<span class="state state-{text(state)}">{text(state)}</span>'


def table(headings: Iterable[str], rows: Iterable[Iterable[str]], body_id: str = "") -> str:
    """`rows` are cells already made safe (built with `text`, `link`, `action`)."""
    head = "".join(f"<th>{text(heading)}</th>" for heading in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    body_attribute = f' id="{text(body_id)}"' if body_id else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody{body_attribute}>{body}</tbody></table>"


def action(
    root: str, name: str, label: str, confirm: str, back: str, **fields: Any
) -> str:  # fmt: skip
    """A POST button for an action, confirmed in the browser (dashboard.js)."""
    inputs = "".join(
        f'<input type="hidden" name="{text(field)}" value="{text(value)}">'
        for field, value in {**fields, "next": back}.items()
    )
    return (
        f'<form class="action" method="post" action="{text(root)}/actions/{text(name)}" '
        f'data-confirm="{text(confirm)}">{inputs}'
        f'<button type="submit" data-action="{text(name)}">{text(label)}</button></form>'
    )


NAVIGATION = (
    ("/", "Overview"),
    ("/executions", "Executions"),
    ("/scheduled", "Scheduled"),
    ("/workers", "Workers"),
    ("/strikes", "Strikes"),
    ("/dead-letters", "Dead letters"),
)


def page(root: str, docket_name: str, title: str, body: str, *, message: str | None = None,
         read_only: bool = False, live: bool = False, watch: Iterable[str] = ()
         ) -> str:  # fmt: skip
    """The frame of every page. `live`: it follows the event stream; `watch`: the
    keys of the executions it shows, followed too (see `live_field`)."""
    navigation = " ".join(link(root, path, label) for path, label in NAVIGATION)
    notice = f'<p class="notice" id="notice">{text(message)}</p>' if message else ""
    mode = ' <span class="badge">read-only</span>' if read_only else ""
    keys = [("key", key) for key in watch]
    live_attribute = ""
    if live or keys:
        query = f"?{urlencode(keys)}" if keys else ""
        live_attribute = f' data-events="{text(root)}/events{text(query)}"'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{text(title)} · {text(docket_name)} · docket-nats</title>
<link rel="stylesheet" href="{text(root)}/static/dashboard.css">
<script src="{text(root)}/static/dashboard.js" defer></script>
</head><body{live_attribute}>
<header><strong>docket-nats</strong> · docket <code>{text(docket_name)}</code>{mode}
<nav>{navigation}</nav></header>
<main><h1>{text(title)}</h1>{notice}{body}</main>
</body></html>"""
