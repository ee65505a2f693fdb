"""docket's `docket.strikelist` names, so imports of that module keep working.

`Strike` and `Restore` are docket's instruction objects: one rule to add or to
take back, as `StrikeList.send_instruction` accepts them. Here they only carry
the rule; the strike list stores it in its KV bucket (see _strike_list.py).
"""

from __future__ import annotations

from ._strike_list import StrikeList
from ._strike_rules import LiteralOperator, Operator, Restore, Strike, StrikeInstruction

__all__ = [
    "LiteralOperator",
    "Operator",
    "Restore",
    "Strike",
    "StrikeInstruction",
    "StrikeList",
]
