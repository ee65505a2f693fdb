"""docket's `get_signature` and `compact_signature` (importable from `execution`).

`get_signature` caches `inspect.signature` per function, since workers look at the
same task functions over and over. `compact_signature` is the one-line parameter
list a worker's startup log shows: the parameters a caller passes, with their type
and default, and `...` standing for every parameter a dependency fills in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from uncalled_for import Dependency

_cache: dict[Callable[..., Any], inspect.Signature] = {}


def get_signature(function: Callable[..., Any]) -> inspect.Signature:
    """The signature of `function`, computed once per function."""
    found = _cache.get(function)
    if found is None:
        declared = getattr(function, "__signature__", None)
        found = declared if isinstance(declared, inspect.Signature) else inspect.signature(function)
        _cache[function] = found
    return found


def compact_signature(signature: inspect.Signature) -> str:
    """`a: int, b: str = 'x', ...`: what a caller supplies (docket's format)."""
    shown: list[str] = []
    supplied_by_dependencies = False
    for parameter in signature.parameters.values():
        if isinstance(parameter.default, Dependency):
            supplied_by_dependencies = True
            continue
        text = parameter.name
        if parameter.annotation is not inspect.Parameter.empty:
            text += f": {_type_name(parameter.annotation)}"
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}"
        shown.append(text)
    if supplied_by_dependencies:
        shown.append("...")
    return ", ".join(shown)


def _type_name(annotation: Any) -> str:
    # docket shows a generic or Annotated hint by its first argument
    # (`Annotated[int, ...]` and `list[int]` both read `int`); kept for parity.
    if hasattr(annotation, "__origin__"):
        annotation = annotation.__args__[0]
    return str(getattr(annotation, "__name__", annotation))
