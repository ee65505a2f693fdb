"""docket's `docket.strikelist` names, so imports of that module keep working.

`Strike` and `Restore` are docket's instruction objects: one rule to add or to
take back, as `StrikeList.send_instruction` accepts them. Here they only carry
the rule; the strike list stores it in its KV bucket (see _strike_list.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import ClassVar, Literal

from ._strike_list import StrikeList
from ._strike_rules import LiteralOperator, Operator, as_operator


class StrikeInstruction:
    """One rule, `function(parameter operator value)`, and which way it goes."""

    direction: ClassVar[Literal["strike", "restore"]]

    def __init__(
        self,
        function: str | None,
        parameter: str | None,
        operator: Operator | LiteralOperator,
        value: Hashable,
    ) -> None:
        self.function = function
        self.parameter = parameter
        self.operator = as_operator(operator)
        self.value = value

    def labels(self) -> dict[str, str]:
        """The rule as telemetry attributes (docket's names)."""
        labels: dict[str, str] = {}
        if self.function:
            labels["docket.task"] = self.function
        if self.parameter:
            labels["docket.parameter"] = self.parameter
            labels["docket.operator"] = self.operator.value
            labels["docket.value"] = repr(self.value)
        return labels

    def call_repr(self) -> str:
        """`task(parameter == 'value')`, with `*` for what the rule leaves open."""
        value = repr(self.value) if self.parameter else "*"
        return f"{self.function or '*'}({self.parameter or '*'} {self.operator.value} {value})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.call_repr()})"


class Strike(StrikeInstruction):
    direction: ClassVar[Literal["strike", "restore"]] = "strike"


class Restore(StrikeInstruction):
    direction: ClassVar[Literal["strike", "restore"]] = "restore"


__all__ = [
    "LiteralOperator",
    "Operator",
    "Restore",
    "Strike",
    "StrikeInstruction",
    "StrikeList",
]
