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

import argparse
import importlib
import json
from datetime import timedelta
from typing import Any

import msgspec

from .._strike_rules import Operator, as_operator
from ._common import CommandError, add_docket_options, docket_from


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


def register(subparsers: Any) -> None:
    for name, verb in (("strike", "strike"), ("restore", "restore")):
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name,
            help=f"{verb} a task or the calls whose arguments match",
            description=(
                f"{verb.capitalize()} TASK ('*' or '' for every task), optionally only the "
                "calls where PARAM OP VALUE holds (docket's FUNCTION PARAMETER OPERATOR VALUE); "
                "several PARAM OP VALUE groups make one rule that matches when ALL hold. "
                "Operators: "
                + ", ".join(each.value for each in Operator)
                + ". Values: a bare string, or TYPE:VALUE (int:5, bool:true, "
                "decimal.Decimal:9.99)."
            ),
        )
        add_docket_options(parser)
        parser.add_argument(
            "task", nargs="?", default="*", metavar="TASK", help="task name, or '*' for every task"
        )
        parser.add_argument(
            "condition", nargs="*", metavar="PARAM OP VALUE", help="conditions (ALL must hold)"
        )
        parser.set_defaults(handler=change, direction=name, trailing_words="condition")

    listing: argparse.ArgumentParser = subparsers.add_parser(
        "strikes", help="list the strike rules in effect", description="List the strike rules."
    )
    add_docket_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(handler=list_rules)


def _wildcard(word: str) -> bool:
    return word in ("", "*")


def announcement(verb: str, task: str | None, conditions: list[tuple[str, Operator, Any]]) -> str:
    """docket's line: `Striking TASK` or `Striking TASK PARAM OP VALUE` (and more groups)."""
    if not conditions:
        return f"{verb} {task}"
    shown = " and ".join(f"{p} {o.value} {v!r}" for p, o, v in conditions)
    return f"{verb} {task or '(all tasks)'} {shown}"


async def change(arguments: argparse.Namespace) -> int:
    task = None if _wildcard(arguments.task) else arguments.task
    conditions = conditions_of(arguments.condition)
    if conditions and _wildcard(conditions[0][0]):
        # docket: a '*' parameter means none; whatever follows it is ignored.
        conditions = []
    if task is None and not conditions:
        raise CommandError("Must provide either a function and/or a parameter")
    parameter, operator, value = conditions[0] if conditions else (None, Operator.EQUAL, None)
    more = {name: (op.value, item) for name, op, item in conditions[1:]}
    if len(more) != len(conditions[1:]):
        raise CommandError("a parameter may appear only once in a rule (besides the first)")
    striking = arguments.direction == "strike"
    print(announcement("Striking" if striking else "Restoring", task, conditions), flush=True)
    async with docket_from(arguments) as docket:
        method = docket.strike if striking else docket.restore
        try:
            await method(task, parameter, operator, value, **more)
        except (ValueError, TypeError) as error:
            raise CommandError(str(error), status=1) from None
    shown = ", ".join(f"{p} {o.value} {v!r}" for p, o, v in conditions) or "*"
    done = "Struck" if striking else "Restored"
    print(f"{done} {task or '*'}({shown}) in the docket {docket.name!r}", flush=True)
    return 0


async def list_rules(arguments: argparse.Namespace) -> int:
    async with docket_from(arguments) as docket:
        rules = docket.strike_list.rules()
    if arguments.json:
        document = [
            {
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
            for rule in rules
        ]
        print(json.dumps(document, indent=2), flush=True)
    elif not rules:
        print(f"No strike rules in the docket {docket.name!r}", flush=True)
    else:
        for rule in rules:
            print(rule, flush=True)
    return 0
