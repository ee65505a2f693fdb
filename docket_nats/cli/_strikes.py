"""`docket-nats strike|restore|strikes`: manage strike rules from a shell.

    docket-nats strike process_order                         the whole task
    docket-nats strike process_order customer_id == 12345     docket's 4-argument form
    docket-nats strike '*' customer_id == 12345               a parameter of every task
    docket-nats strike process_order customer_id == 12345 amount '>' int:1000
                                                             one rule, ALL conditions
    docket-nats restore ...                                  same arguments: lifts it
    docket-nats strikes [--json]                             the rules in effect

Values are typed as docket's CLI types them: a bare value is a string,
`TYPE:VALUE` converts it (`int:5`, `float:2.5`, `bool:true`, `decimal.Decimal:9.99`,
`datetime.timedelta:30` in seconds, any importable `module.Callable:text`).
`between` takes two values: `amount between int:10 int:20`.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from datetime import timedelta
from typing import Annotated, Any

import msgspec
import typer

from .._strike_rules import Operator, Rule, as_operator
from ._common import CommandError, Target, docket_command, docket_from
from ._output import (
    FormatOption,
    JsonFlag,
    OutputFormat,
    json_document,
    say,
    show,
    table,
    wants_json,
)


def typed_value(text: str) -> Any:
    """docket's `TYPE:VALUE` convention; a value without a type is a string."""
    type_name, _, value = text.rpartition(":")
    if not type_name:
        return value
    module_name, _, member_name = type_name.rpartition(".")
    try:
        member = getattr(importlib.import_module(module_name or "builtins"), member_name)
    except (ImportError, AttributeError, ValueError):
        raise CommandError(f"unknown type {type_name!r} in {text!r}", status=1) from None
    if member is timedelta:
        return timedelta(seconds=int(value))
    if member is bool:
        return value.lower() == "true"
    try:
        return member(value)
    except Exception as error:
        raise CommandError(f"cannot make a {type_name} of {value!r}: {error}", status=1) from None


def conditions_of(words: list[str]) -> list[tuple[str, Operator, Any]]:
    """PARAM [OP [VALUE]] groups, one after another (`between` takes two values).

    As in docket, a missing operator is `==` and a missing value is None.
    """
    conditions: list[tuple[str, Operator, Any]] = []
    index = 0
    while index < len(words):
        parameter = words[index]
        try:
            operator = as_operator(words[index + 1]) if index + 1 < len(words) else Operator.EQUAL
        except ValueError as error:
            raise CommandError(str(error)) from None
        wanted = 2 if operator is Operator.BETWEEN else 1
        values = [typed_value(word) for word in words[index + 2 : index + 2 + wanted]]
        if operator is Operator.BETWEEN:
            if len(values) != 2:
                raise CommandError(f"'{parameter} between' takes two values: LOW HIGH")
            value: Any = tuple(values)
        else:
            value = values[0] if values else None
        conditions.append((parameter, operator, value))
        index += 2 + wanted
    return conditions


EXAMPLES = """\
Examples:

  docket-nats strike process_order

  docket-nats strike process_order customer_id == 12345

  docket-nats strike '*' customer_id == 12345

  docket-nats strike process_order customer_id == 12345 amount '>' int:1000

  docket-nats restore process_order customer_id == 12345
"""


def register(app: typer.Typer) -> None:
    for verb, run in (("strike", strike), ("restore", restore)):
        app.command(
            verb,
            short_help=f"{verb.capitalize()} a task, or its calls whose arguments match.",
            help=f"{verb.capitalize()} TASK ('*' or '' for every task), or only its calls where "
            "PARAM OP VALUE holds (docket's FUNCTION PARAMETER OPERATOR VALUE); several "
            "PARAM OP VALUE groups make one rule that matches when ALL hold. Operators: "
            + ", ".join(each.value for each in Operator)
            + ". Values: a bare string, or TYPE:VALUE (int:5, bool:true, decimal.Decimal:9.99).",
            epilog=EXAMPLES,
            # A condition's value may look like an option (-5): unknown options
            # come through as words, and `conditions_of` refuses real ones.
            context_settings={"ignore_unknown_options": True},
        )(docket_command()(run))
    app.command(
        "strikes",
        help="List the strike rules in effect.",
        epilog="Example: docket-nats strikes --format json",
    )(docket_command()(list_rules))


Task = Annotated[str, typer.Argument(metavar="TASK", help="task name, or '*' for every task")]
Conditions = Annotated[
    list[str] | None,
    typer.Argument(metavar="[PARAM OP VALUE]...", help="conditions (ALL must hold)"),
]


def strike(target: Target, task: Task = "*", condition: Conditions = None) -> None:
    change(target, "strike", task, condition or [])


def restore(target: Target, task: Task = "*", condition: Conditions = None) -> None:
    change(target, "restore", task, condition or [])


def _wildcard(word: str) -> bool:
    return word in ("", "*")


def announcement(verb: str, task: str | None, conditions: list[tuple[str, Operator, Any]]) -> str:
    """docket's line: `Striking TASK` or `Striking TASK PARAM OP VALUE` (and more groups)."""
    if not conditions:
        return f"{verb} {task}"
    shown = " and ".join(f"{p} {o.value} {v!r}" for p, o, v in conditions)
    return f"{verb} {task or '(all tasks)'} {shown}"


def change(target: Target, direction: str, task_word: str, words: list[str]) -> None:
    for word in words:
        if _looks_like_option(word):
            raise CommandError(
                f"No such option: {word}", fix=f"see 'docket-nats {direction} --help'"
            )
    task = None if _wildcard(task_word) else task_word
    conditions = conditions_of(words)
    if conditions and _wildcard(conditions[0][0]):
        # docket: a '*' parameter means none; whatever follows it is ignored.
        conditions = []
    if task is None and not conditions:
        raise CommandError(
            "Must provide either a function and/or a parameter",
            fix=f"e.g. docket-nats {direction} TASK, or {direction} '*' PARAM OP VALUE",
        )
    if len({name for name, _, _ in conditions[1:]}) != len(conditions[1:]):
        raise CommandError("a parameter may appear only once in a rule (besides the first)")
    striking = direction == "strike"
    say(announcement("Striking" if striking else "Restoring", task, conditions))
    docket_name = asyncio.run(apply(target, striking, task, conditions))
    shown = ", ".join(f"{p} {o.value} {v!r}" for p, o, v in conditions) or "*"
    done = "Struck" if striking else "Restored"
    say(f"{done} {task or '*'}({shown}) in the docket {docket_name!r}")


def _looks_like_option(word: str) -> bool:
    return word.startswith("-") and re.fullmatch(r"-\d+(\.\d+)?", word) is None


async def apply(
    target: Target, striking: bool, task: str | None, conditions: list[tuple[str, Operator, Any]]
) -> str:
    parameter, operator, value = conditions[0] if conditions else (None, Operator.EQUAL, None)
    more = {name: (op.value, item) for name, op, item in conditions[1:]}
    async with docket_from(target) as docket:
        method = docket.strike if striking else docket.restore
        try:
            await method(task, parameter, operator, value, **more)
        except (ValueError, TypeError) as error:
            raise CommandError(str(error), status=1) from None
        return docket.name


def rule_document(rule: Rule) -> dict[str, Any]:
    return {
        "key": rule.key,
        "task": rule.function,
        "conditions": [
            {
                "parameter": condition.parameter,
                "operator": condition.operator.value,
                "value": msgspec.to_builtins(condition.value),
                "type": type(condition.value).__name__,
            }
            for condition in rule.conditions
        ],
    }


def list_rules(
    target: Target, output_format: FormatOption = OutputFormat.TABLE, json_flag: JsonFlag = False
) -> None:
    rules = asyncio.run(current_rules(target))
    if wants_json(output_format, json_flag):
        json_document([rule_document(rule) for rule in rules])
        return
    if not rules:
        say(f"No strike rules in the docket {target.name!r}")
        return
    shown = table(["TASK", "WHEN ALL HOLD"], title=f"Strike rules in Docket: {target.name}")
    for rule in rules:
        conditions = " and ".join(str(condition) for condition in rule.conditions)
        shown.add_row(rule.function or "*", conditions or "(every call)")
    show(shown)


async def current_rules(target: Target) -> list[Rule]:
    async with docket_from(target) as docket:
        return list(docket.strike_list.rules())
