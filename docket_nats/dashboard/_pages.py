"""The dashboard's pages (GET): server-rendered HTML, every value escaped (`_html.text`).

They read through the docket's own read APIs (`Docket.snapshot`, `get_execution`,
`workers`, `dead_letters`, the strike list) and the shared live index; the
overview and the executions page read only the live view, so they cost NATS
nothing per request.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .._state_records import transitions
from .._wire import UndecodableMessage, decode_envelope
from ..execution import Execution, from_envelope
from ._html import (
    STATES,
    action,
    execution_link,
    link,
    live_field,
    page,
    state_badge,
    table,
    text,
)
from ._state import Dashboard, dashboard_of, here, root_of

PAGE_SIZE = 50
# The work stream is read one message at a time: listings of scheduled and
# queued tasks stop here (the counts stay exact).
WORK_LISTING_LIMIT = 1000
TIMELINE = timedelta(hours=1)
DEAD_LETTER_LIMIT = 500
COUNTS = (*STATES, "dead")


def _respond(
    request: Request, title: str, body: str, *, live: bool = False, watch: list[str] | None = None
) -> HTMLResponse:  # fmt: skip
    dashboard = dashboard_of(request)
    return HTMLResponse(
        page(
            root_of(request),
            dashboard.docket.name,
            title,
            body,
            message=request.query_params.get("message"),
            read_only=dashboard.read_only,
            live=live,
            watch=watch or (),
        )
    )


# -- overview -----------------------------------------------------------------------


def _count_cards(root: str, counts: dict[str, int]) -> str:
    cards: list[str] = []
    for name in COUNTS:
        path = "/dead-letters" if name == "dead" else "/executions"
        query = {} if name == "dead" else {"state": name}
        label = "dead letters" if name == "dead" else name
        cards.append(
            f'<div class="count state-{text(name)}">{link(root, path, label, **query)}'
            f'<span class="number" data-count="{text(name)}">{text(counts.get(name, 0))}</span>'
            "</div>"
        )
    return f'<section class="counts">{"".join(cards)}</section>'


def _chart(bars: list[float]) -> str:
    peak = max(bars, default=0) or 1
    shown = "".join(
        f'<span class="bar" style="height:{round(100 * value / peak)}%" '
        f'title="{text(value)} tasks/s"></span>'
        for value in bars
    )
    return (
        f'<div class="chart" id="chart" data-peak="{text(max(bars, default=0))}">{shown}</div>'
        '<p class="axis">15 minutes ago … now; peak <span id="chart-peak">'
        f"{text(max(bars, default=0))}</span> tasks/s</p>"
    )


def worker_rows(workers: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            text(worker["name"]),
            text(len(worker["tasks"])),
            text(worker["concurrency"]),
            text(worker["running"]),
            text(worker["last_seen"]),
        ]
        for worker in workers
    ]


WORKER_HEADINGS = ("worker", "tasks", "concurrency", "in flight", "last heartbeat")
RECENT_HEADINGS = ("key", "function", "state", "worker", "completed")


def recent_rows(root: str, recent: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            execution_link(root, row["key"]),
            text(row["function"]),
            f'<span class="state state-{text(row["state"])}">{text(row["state"])}</span>',
            text(row["worker"]),
            text(row["completed_at"]),
        ]
        for row in recent
    ]


async def overview(request: Request) -> HTMLResponse:
    root = root_of(request)
    summary = dashboard_of(request).live.summary
    body = (
        _count_cards(root, summary.get("counts", {}))
        + "<h2>Tasks per second</h2>"
        + _chart(summary.get("chart", []))
        + "<h2>Live workers</h2>"
        + table(WORKER_HEADINGS, worker_rows(summary.get("workers", [])), "workers-body")
        + "<h2>Latest changes</h2>"
        + table(RECENT_HEADINGS, recent_rows(root, summary.get("recent", [])), "recent-body")
    )
    return _respond(request, "Overview", body, live=True)


# -- executions -----------------------------------------------------------------------


def _execution_actions(
    request: Request, dashboard: Dashboard, key: str, state: str, back: str
) -> str:  # fmt: skip
    if not dashboard.actions:
        return ""
    root = root_of(request)
    buttons: list[str] = []
    if state in ("scheduled", "queued", "running"):
        buttons.append(action(root, "cancel", "Cancel", f"Cancel {key}?", back, key=key))
    if state in ("scheduled", "queued"):
        buttons.append(action(root, "run-now", "Run now", f"Run {key} now?", back, key=key))
    if state == "failed":
        question = f"Run {key} again with its original arguments?"
        buttons.append(action(root, "retry-failed", "Retry", question, back, key=key))
    return "".join(buttons)


def _filters(state: str, function: str, prefix: str, functions: list[str]) -> str:
    state_options = "".join(
        f'<option value="{text(each)}"{" selected" if each == state else ""}>'
        f"{text(each or 'all recorded')}</option>"
        for each in ("", *STATES)
    )
    function_options = "".join(
        f'<option value="{text(each)}"{" selected" if each == function else ""}>'
        f"{text(each or 'any task')}</option>"
        for each in ("", *functions)
    )
    return (
        '<form class="filters" method="get">'
        f'<label>state <select name="state">{state_options}</select></label> '
        f'<label>task <select name="function">{function_options}</select></label> '
        f'<label>key prefix <input name="prefix" value="{text(prefix)}"></label> '
        '<button type="submit">Filter</button></form>'
    )


async def _work_listing(
    dashboard: Dashboard, state: str, function: str, prefix: str, needed: int
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """Scheduled or queued tasks from the work stream, read one message at a time:
    the `needed` first ones, or up to WORK_LISTING_LIMIT to filter them."""
    limit = WORK_LISTING_LIMIT if function or prefix else min(needed, WORK_LISTING_LIMIT)
    snapshot = await dashboard.docket.snapshot(limit=limit)
    rows = [
        {
            "key": execution.key,
            "function": execution.function_name,
            "state": execution.state.value,
            "when": execution.when.isoformat(timespec="seconds"),
            "worker": execution.worker,
            "completed_at": None,
        }
        for execution in snapshot.future
        if execution.state.value == state
        and (not function or execution.function_name == function)
        and (not prefix or execution.key.startswith(prefix))
    ]
    return rows, snapshot.truncated


def _page_number(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


async def executions(request: Request) -> HTMLResponse:
    dashboard = dashboard_of(request)
    root = root_of(request)
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    function = request.query_params.get("function", "")
    prefix = request.query_params.get("prefix", "")
    number = _page_number(request)
    first = (number - 1) * PAGE_SIZE
    live = dashboard.live
    cut = False
    if state in ("scheduled", "queued"):
        listed, cut = await _work_listing(dashboard, state, function, prefix, first + PAGE_SIZE)
        shown = listed[first : first + PAGE_SIZE]
        total = len(listed)
        if not (function or prefix):  # the exact count, from the live view
            total = max(total, live.summary.get("counts", {}).get(state, 0))
            cut = False
    else:
        matching = live.matching(state or None, function or None, prefix or None)
        shown = [row.document() for row in itertools.islice(matching, first, first + PAGE_SIZE)]
        if function or prefix:
            total = sum(1 for _ in live.matching(state or None, function or None, prefix or None))
        else:
            total = live.states[state] if state else len(live.rows)
    back = here(request)
    rows: list[list[str]] = []
    for row in shown:
        key = row["key"]
        revision = live.revision(key)  # live news of the key newer than this only
        rows.append(
            [
                execution_link(root, key),
                text(row["function"]),
                live_field(key, "state", state_badge(row["state"]), revision),
                text(row["when"]),
                live_field(key, "worker", text(row["worker"]), revision),
                live_field(key, "completed_at", text(row["completed_at"]), revision),
                _execution_actions(request, dashboard, key, row["state"], back),
            ]
        )
    pages = max(1, -(-total // PAGE_SIZE))
    navigation = " ".join(
        link(root, "/executions", label, state=state, function=function, prefix=prefix, page=n)
        for label, n in (("« previous", number - 1), ("next »", number + 1))
        if 1 <= n <= pages
    )
    body = (
        _filters(state, function, prefix, live.functions())
        + f'<p class="total">{text(total)} executions{" (listing cut)" if cut else ""}'
        + f" · page {text(number)} of {text(pages)} {navigation}</p>"
        + table(("key", "function", "state", "when", "worker", "ended", ""), rows, "executions")
    )
    return _respond(request, "Executions", body, watch=[row["key"] for row in shown])


# -- one execution --------------------------------------------------------------------


def _progress(execution: Execution, revision: int) -> str:
    """The progress bar (hidden while there is none: the live view may show it)."""
    progress = execution.progress
    current, total = progress.current, progress.total
    hidden = " hidden" if current is None else ""
    share = round(100 * (current or 0) / max(1, total))
    line = f"{text(current or 0)} / {text(total)} ({text(share)}%) {text(progress.message or '')}"
    bar = (
        f'<p class="progress"{hidden}>Progress: <progress max="{text(total)}" '
        f'value="{text(current or 0)}"></progress> <span class="progress-text">{line}</span></p>'
    )
    return live_field(execution.key, "progress", bar, revision, "div")


def _history(execution: Execution, revision: int) -> str:
    """The states the execution went through, with their times: its latest run's,
    as its record carries them (the bucket keeps one record per key)."""
    state = execution.state.value
    steps: list[tuple[str, Any]]
    if execution.result_record is None:  # waiting in the work stream, nothing recorded
        steps = [("due", execution.when)]
    else:
        steps = list(
            transitions(state, execution.when, execution.started_at, execution.completed_at)
        )
    rows = [[text(step), text(moment)] for step, moment in steps]
    earlier = ""
    if execution.attempt > 1:
        earlier = (
            f'<p class="axis">Attempt {text(execution.attempt)}: the times of the earlier '
            "attempts are not kept.</p>"
        )
    listing = table(("state", "since"), rows, "history")
    return (
        "<h2>State history</h2>"
        + live_field(execution.key, "history", listing, revision, "div")
        + earlier
    )


async def _outcome(execution: Execution) -> str:
    if execution.state.value == "failed":
        record = execution.result_record
        stored = record.exception if record is not None else None
        details = execution.error or ""
        if stored is not None:
            details = f"{stored.type}: {stored.message}\n\n{stored.traceback}"
        return f'<h2>Error</h2><pre class="error">{text(details)}</pre>'
    if execution.state.value == "completed":
        try:
            result = await execution.get_result(timeout=timedelta(seconds=1))
        except Exception as error:  # the task's own type may not be known here
            return f"<h2>Result</h2><pre>{text(f'(not readable here: {error})')}</pre>"
        return f"<h2>Result</h2><pre>{text(repr(result))}</pre>"
    return ""


def _call(dashboard: Dashboard, execution: Execution) -> str:
    """The call as the worker logs it (only `Logged` arguments shown). The arguments
    live in the task's message, which is gone once a run was recorded, except for
    a run that FAILED for good: its record keeps the call (to retry it)."""
    if execution.state.value in ("scheduled", "queued"):
        return f"<code>{text(execution.call_repr())}</code>"
    record = execution.result_record
    if execution.state.value == "failed" and record is not None:
        if record.call is None:
            return text(f"{execution.function_name}: {record.call_problem or 'not kept'}")
        try:
            envelope = decode_envelope(record.call)
        except UndecodableMessage:
            return text(f"{execution.function_name}: the kept call does not decode")
        kept = from_envelope(dashboard.docket.context, envelope, lenient=True)
        return f"<code>{text(kept.call_repr())}</code>"
    return text(f"{execution.function_name}: arguments are not kept once a run starts")


async def one_execution(request: Request) -> HTMLResponse:
    dashboard = dashboard_of(request)
    key = request.query_params.get("key", "")
    execution = await dashboard.docket.get_execution(key) if key else None
    if execution is None:
        body = f"<p>Nothing is known of the key <code>{text(key)}</code>.</p>"
        return _respond(request, "Execution", body)
    await execution.sync()
    state = execution.state.value
    back = f"/execution?{urlencode({'key': key})}"
    # Live news of this key is shown once its record is newer than what was read here.
    revision = dashboard.live.revision(key)

    def live(field: str, inner: str) -> str:
        return live_field(key, field, inner, revision)

    facts = [
        ("key", text(execution.key)),
        ("task", text(execution.function_name)),
        ("call, as logged", _call(dashboard, execution)),
        ("state", live("state", state_badge(state))),
        ("due", text(execution.when)),
        ("attempt", live("attempt", text(execution.attempt))),
        ("worker", live("worker", text(execution.worker))),
        ("started", live("started_at", text(execution.started_at))),
        ("ended", live("completed_at", text(execution.completed_at))),
    ]
    listing = "".join(f"<tr><th>{text(name)}</th><td>{value}</td></tr>" for name, value in facts)
    ended = (
        '<p class="notice" id="ended" hidden>This run has ended: '
        f"{link(root_of(request), '/execution', 'reload for its outcome', key=key)}</p>"
    )
    body = (
        f'<table class="facts" data-state="{text(state)}">{listing}</table>'
        + ended
        + _progress(execution, revision)
        + await _outcome(execution)
        + _execution_actions(request, dashboard, execution.key, state, back)
        + _history(execution, revision)
    )
    return _respond(request, "Execution", body, watch=[key])


# -- scheduled timeline -----------------------------------------------------------------


async def scheduled(request: Request) -> HTMLResponse:
    dashboard = dashboard_of(request)
    root = root_of(request)
    now = datetime.now(UTC)
    snapshot = await dashboard.docket.snapshot(limit=WORK_LISTING_LIMIT)
    due = sorted(
        (execution for execution in snapshot.future if execution.when <= now + TIMELINE),
        key=lambda execution: execution.when,
    )
    rows: list[list[str]] = []
    for execution in due:
        ahead = max(0.0, (execution.when - now).total_seconds())
        offset = round(100 * ahead / TIMELINE.total_seconds())
        rows.append(
            [
                text(execution.when),
                f'<span class="timeline"><span class="mark" style="left:{offset}%"></span></span>',
                execution_link(root, execution.key),
                text(execution.function_name),
                text(execution.state.value),
                _execution_actions(
                    request, dashboard, execution.key, execution.state.value, "/scheduled"
                ),
            ]
        )
    cut = " (only the first tasks of the work stream were read)" if snapshot.truncated else ""
    body = f"<p>{text(len(rows))} tasks due in the next hour{text(cut)}.</p>" + table(
        ("due", "now … +1 h", "key", "task", "state", ""), rows, "timeline"
    )
    return _respond(request, "Scheduled, next hour", body)


# -- workers, strikes, dead letters ------------------------------------------------------


async def workers(request: Request) -> HTMLResponse:
    summary = dashboard_of(request).live.summary
    rows = [
        [
            text(worker["name"]),
            text(", ".join(worker["tasks"])),
            text(worker["concurrency"]),
            text(worker["running"]),
            text(worker["last_seen"]),
        ]
        for worker in summary.get("workers", [])
    ]
    body = table(("worker", "tasks", "concurrency", "in flight", "last heartbeat"), rows)
    return _respond(request, "Workers", body)


async def strikes(request: Request) -> HTMLResponse:
    dashboard = dashboard_of(request)
    root = root_of(request)
    rows: list[list[str]] = []
    for rule in dashboard.docket.strike_list.rules():
        conditions = " and ".join(str(condition) for condition in rule.conditions)
        restore = (
            action(root, "restore", "Restore", f"Restore {rule}?", "/strikes", rule=rule.key)
            if dashboard.actions
            else ""
        )
        rows.append([text(rule.function or "*"), text(conditions or "(every call)"), restore])
    form = ""
    if dashboard.actions:
        form = (
            "<h2>Strike</h2>"
            f'<form class="strike" method="post" action="{text(root)}/actions/strike"'
            ' data-confirm="Strike these calls?">'
            '<input type="hidden" name="next" value="/strikes">'
            '<label>task <input name="task" placeholder="* for every task"></label> '
            '<label>conditions <input name="conditions" size="40" '
            'placeholder="customer_id == 12345 amount &gt; int:1000"></label> '
            '<button type="submit" data-action="strike">Strike</button></form>'
        )
    body = table(("task", "when all hold", ""), rows, "strikes") + form
    return _respond(request, "Strikes", body)


def _payload(dashboard: Dashboard, data: bytes) -> str:
    """The parked call as the worker logs it (only `Logged` arguments shown); for
    a task not registered here, whose signature says nothing of what may be
    shown, only its name and how many arguments it has."""
    try:
        envelope = decode_envelope(data)
    except UndecodableMessage:
        return f"({len(data)} bytes that do not decode)"
    if envelope.function in dashboard.docket.tasks:
        return from_envelope(dashboard.docket.context, envelope, lenient=True).call_repr()
    count = len(envelope.args) + len(envelope.kwargs)
    return f"{envelope.function}({count} argument{'' if count == 1 else 's'}, not shown)"


async def dead_letters(request: Request) -> HTMLResponse:
    dashboard = dashboard_of(request)
    root = root_of(request)
    letters = await dashboard.docket.dead_letters(limit=DEAD_LETTER_LIMIT)
    # Purging a key removes its letters as of this page: the newest one's time
    # goes with the form, so a letter parked since is not purged unseen.
    newest = {letter.key: letter.parked_at.isoformat() for letter in letters}  # oldest first
    rows: list[list[str]] = []
    for letter in letters:
        buttons = ""
        if dashboard.actions:
            buttons = action(
                root, "retry-dead-letter", "Retry", f"Retry {letter.key} now?", "/dead-letters",
                key=letter.key,
            ) + action(
                root, "purge-dead-letters", "Purge", f"Purge the letters of {letter.key}?",
                "/dead-letters", key=letter.key, parked_at=newest[letter.key],
            )  # fmt: skip
        rows.append(
            [
                text(letter.parked_at),
                text(letter.key),
                text(letter.function),
                text(letter.reason),
                f"<code>{text(_payload(dashboard, letter.data))}</code>",
                text(letter.worker),
                buttons,
            ]
        )
    purge_all = ""
    if dashboard.actions and letters:
        purge_all = action(
            root, "purge-dead-letters", "Purge all", "Purge every dead letter?", "/dead-letters"
        )
    body = purge_all + table(
        ("parked", "key", "task", "reason", "payload", "worker", ""), rows, "letters"
    )
    return _respond(request, "Dead letters", body)
