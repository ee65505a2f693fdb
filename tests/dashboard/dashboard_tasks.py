"""Tasks the dashboard tests add; the dashboard process registers them (--tasks)."""

from __future__ import annotations


async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


async def refuse(reason: str) -> None:
    raise ValueError(f"refused: {reason}")


tasks = [greet, refuse]
