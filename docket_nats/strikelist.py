"""docket's `docket.strikelist` names, so imports of that module keep working."""

from .strike_rules import LiteralOperator, Operator
from .strikes import StrikeList

__all__ = ["LiteralOperator", "Operator", "StrikeList"]
