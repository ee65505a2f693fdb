"""Task functions for tests that need a real module: string annotations, collections.

`from __future__ import annotations` turns every annotation into a string; the
worker must still decode a dataclass argument as that dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decimal import Decimal  # never importable at run time by get_type_hints

received: list[object] = []


@dataclass
class Order:
    number: int
    items: list[str]


async def take_order(order: Order) -> None:
    received.append(order)


async def take_order_with_hint_only_name(order: Order, note: Decimal | None = None) -> None:
    """One annotation names a TYPE_CHECKING-only import: the others must still decode."""
    received.append(order)


async def first_collected(value: int) -> None:
    received.append(("first", value))


def second_collected(value: int) -> None:
    received.append(("second", value))


collection = [first_collected, second_collected]
