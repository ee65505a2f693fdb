"""The dashboard's actions (POST): each one call of the public `Docket` API, so
the dashboard can do nothing the API cannot.

Forms are URL-encoded and parsed here (Starlette's form parser needs
python-multipart, one more dependency for five small forms). After an action
the browser is sent back to the page it came from with a one-line message.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .._dead_letters import read_dead_letter
from .._queue_bound import QueueFull
from .._strike_rules import Operator
from ..cli._common import CommandError
from ..cli._strikes import conditions_of
from ..docket import Docket
from ..execution import Disposition, Execution
from ._security import local_path
from ._state import dashboard_of, root_of

FORM_LIMIT = 64 * 1024


class Refused(Exception):
    """An action that cannot be done as asked: the message says why."""


async def form_of(request: Request) -> dict[str, str]:
    """The URL-encoded form, read no further than FORM_LIMIT bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > FORM_LIMIT:
        raise Refused("the form is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise Refused("the form is too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _key(form: dict[str, str]) -> str:
    key = form.get("key", "")
    if not key:
        raise Refused("no key given")
    return key


async def cancel(docket: Docket, form: dict[str, str]) -> str:
    key = _key(form)
    await docket.cancel(key)
    return f"cancelled {key}"


async def run_now(docket: Docket, form: dict[str, str]) -> str:
    """Replace a scheduled or queued task with the same call, due now."""
    key = _key(form)
    execution = await docket.get_execution(key)
    if execution is None or execution.state.value not in ("scheduled", "queued"):
        raise Refused(f"{key} is not waiting to run")
    if execution.function_name not in docket.tasks:
        raise Refused(
            f"the task {execution.function_name!r} is not registered in the dashboard, so its "
            "arguments cannot be read back: start it with --tasks MODULE:ATTR"
        )
    replace = docket.replace(execution.function_name, when=datetime.now(UTC), key=key)
    await replace(*execution.args, **execution.kwargs)
    return f"{key} runs now"


def _retry(
    method: Callable[[Docket], Callable[[str], Awaitable[Execution]]],
) -> Callable[[Docket, dict[str, str]], Awaitable[str]]:
    """An action that adds a kept call again through one of the docket's retries."""

    async def retry(docket: Docket, form: dict[str, str]) -> str:
        key = _key(form)
        try:
            execution = await method(docket)(key)
        except (LookupError, ValueError) as error:  # nothing to retry, no call, unknown task
            raise Refused(f"cannot retry {key}: {error}") from None
        if execution.disposition is not Disposition.SCHEDULED:
            raise Refused(f"{key} was not added again ({execution.disposition.value})")
        return f"{key} added again"

    return retry


retry_dead_letter = _retry(lambda docket: docket.retry_dead_letter)
retry_failed = _retry(lambda docket: docket.retry_failed)


async def purge_dead_letters(docket: Docket, form: dict[str, str]) -> str:
    """Purge every letter, or the letters of `key`: with `parked_at` (the newest
    letter of the key the page showed), only if no letter was parked since."""
    key = form.get("key") or None
    shown = form.get("parked_at")
    if key is not None and shown:
        newest = await read_dead_letter(docket.context, key)
        if newest is None:
            raise Refused(f"no dead letter {key} (already purged?)")
        if newest.parked_at.isoformat() != shown:
            raise Refused(f"a newer letter {key} was parked since the page was shown: reload")
    removed = await docket.purge_dead_letters(key)
    return f"purged {removed} dead letter{'' if removed == 1 else 's'}"


async def strike(docket: Docket, form: dict[str, str]) -> str:
    """The CLI's `strike TASK [PARAM OP VALUE]...`, from the form's two fields."""
    task = form.get("task", "").strip()
    try:
        conditions = conditions_of(shlex.split(form.get("conditions", "")))
    except (CommandError, ValueError) as error:
        raise Refused(str(error)) from None
    function = None if task in ("", "*") else task
    if function is None and not conditions:
        raise Refused("give a task, or conditions for every task")
    parameter, operator, value = conditions[0] if conditions else (None, Operator.EQUAL, None)
    more = {name: (op.value, item) for name, op, item in conditions[1:]}
    try:
        await docket.strike(function, parameter, operator, value, **more)
    except (ValueError, TypeError) as error:
        raise Refused(str(error)) from None
    return f"struck {function or '*'}"


async def restore(docket: Docket, form: dict[str, str]) -> str:
    """Lift the rule with this key, with the arguments that made it."""
    wanted = form.get("rule", "")
    rule = next((each for each in docket.strike_list.rules() if each.key == wanted), None)
    if rule is None:
        raise Refused("no such strike rule (already restored?)")
    first, *others = rule.conditions or (None,)
    more: dict[str, Any] = {each.parameter: (each.operator.value, each.value) for each in others}
    if first is None:
        await docket.restore(rule.function)
    else:
        await docket.restore(rule.function, first.parameter, first.operator, first.value, **more)
    return f"restored {rule}"


ACTIONS: dict[str, Callable[[Docket, dict[str, str]], Awaitable[str]]] = {
    "cancel": cancel,
    "run-now": run_now,
    "retry-dead-letter": retry_dead_letter,
    "retry-failed": retry_failed,
    "purge-dead-letters": purge_dead_letters,
    "strike": strike,
    "restore": restore,
}


def _back(request: Request, form: dict[str, str], message: str) -> str:
    """The page to return to: a path of this app only (never another site)."""
    wanted = urlsplit(local_path(form.get("next", "/")))
    path = wanted.path
    query = parse_qs(wanted.query)
    query.pop("message", None)
    pairs = [(name, value) for name, values in query.items() for value in values]
    pairs.append(("message", message))
    return f"{root_of(request)}{path}?{urlencode(pairs)}"


async def perform(request: Request) -> Response:
    """POST /actions/{name} (the security checks ran before, in the app)."""
    dashboard = dashboard_of(request)
    name = request.path_params["name"]
    handler = ACTIONS.get(name)
    if handler is None:
        return PlainTextResponse(f"no action {name!r}", status_code=404)
    form: dict[str, str] = {}
    status = 200
    try:
        form = await form_of(request)
        message = await handler(dashboard.docket, form)
    except Refused as error:
        message, status = str(error), 409
    except QueueFull as error:
        message, status = f"not done, try again later: {error}", 503
    except TimeoutError:  # nats-py's timeouts are TimeoutErrors too
        message, status = "not done: NATS did not answer in time, try again", 503
    if "text/html" not in request.headers.get("accept", ""):
        # A script or a test, not a browser's form: the outcome as plain text.
        return PlainTextResponse(message, status_code=status)
    return RedirectResponse(_back(request, form, message), status_code=303)
