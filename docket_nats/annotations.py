"""`Logged`: which task arguments the worker's log lines may show.

A worker logs every run as a call line, docket's format:

    process_payment('12345', credit_card=..., amount=150.0){key}

Only arguments of parameters annotated `Annotated[T, Logged]` appear (as their
`repr`, or only their length with `Logged(length_only=True)`); every other
argument is `...`, so secrets stay out of logs unless a parameter opts in.

The worker renders a call line for each start and finish, thousands of times a
second: what a function declares is worked out once and cached per function
(`call_format`), and a function without `Logged` parameters renders from a
per-shape cache without looking at the argument values at all.
"""

from __future__ import annotations

import inspect
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from ._types import TaskInvocation


class Logged:
    """Marks a task parameter whose argument may appear in the worker's logs.

    `Annotated[str, Logged]` logs the argument's `repr`;
    `Annotated[list[str], Logged(length_only=True)]` logs only its length:
    `[len 3]` for a list (or any sized value), `{len 3}` for a dict or set,
    `(len 3)` for a tuple.
    """

    __slots__ = ("length_only",)

    def __init__(self, length_only: bool = False) -> None:
        self.length_only = length_only

    def format(self, argument: Any) -> str:
        if self.length_only:
            if isinstance(argument, dict | set):
                return f"{{len {len(argument)}}}"  # pyright: ignore[reportUnknownArgumentType]
            if isinstance(argument, tuple):
                return f"(len {len(argument)})"  # pyright: ignore[reportUnknownArgumentType]
            if hasattr(argument, "__len__"):
                return f"[len {len(argument)}]"
        return repr(argument)

    def __repr__(self) -> str:
        return f"Logged(length_only={self.length_only})"


class CallFormat:
    """How one function's calls render in log lines (built once per function)."""

    __slots__ = ("_by_shape", "logged", "parameters")

    def __init__(self, function: Callable[..., Any]) -> None:
        # Positional arguments pair with parameters in declaration order (docket's
        # rule; positionals beyond the parameters are left out).
        self.parameters: tuple[str, ...] = ()
        self.logged: dict[str, Logged] = {}
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            self.parameters = tuple(signature.parameters)
            for name, hint in _type_hints(function, signature).items():
                marker = _logged_marker(hint)
                if marker is not None:
                    self.logged[name] = marker
        # Without Logged parameters the text depends only on the call's shape.
        self._by_shape: dict[tuple[int, tuple[str, ...]], str] = {}

    def arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The text between the parentheses: logged values, `...` for the rest."""
        if not self.logged:
            shape = (len(args), tuple(kwargs))
            text = self._by_shape.get(shape)
            if text is None:
                if len(self._by_shape) >= 64:  # callers with ever-new keyword names
                    self._by_shape.clear()
                text = self._by_shape[shape] = self._render(args, kwargs)
            return text
        return self._render(args, kwargs)

    def _render(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        logged = self.logged
        parts: list[str] = []
        for name, value in zip(self.parameters, args, strict=False):
            marker = logged.get(name)
            parts.append("..." if marker is None else marker.format(value))
        for name, value in kwargs.items():
            marker = logged.get(name)
            parts.append(f"{name}=..." if marker is None else f"{name}={marker.format(value)}")
        return ", ".join(parts)


def call_repr(execution: TaskInvocation) -> str:
    """A run as the worker's log lines show it: `name(logged args){key}`."""
    arguments = call_format(execution.function).arguments(execution.args, execution.kwargs)
    return f"{execution.function_name}({arguments}){{{execution.key}}}"


def _logged_marker(hint: Any) -> Logged | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    for item in reversed(typing.get_args(hint)[1:]):  # the innermost-last one wins
        if isinstance(item, Logged):
            return item
        if item is Logged:
            return Logged()
    return None


def _type_hints(function: Callable[..., Any], signature: inspect.Signature) -> dict[str, Any]:
    """Annotations with their `Annotated` extras, string ones resolved where possible."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        # One unresolvable name (a local class under `from __future__ import
        # annotations`) must not hide the Logged markers of the other parameters.
        namespace = getattr(function, "__globals__", {})
        hints: dict[str, Any] = {}
        for name, parameter in signature.parameters.items():
            annotation = parameter.annotation
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, namespace)
                except Exception:
                    continue
            hints[name] = annotation
        return hints


_formats: weakref.WeakKeyDictionary[Callable[..., Any], CallFormat] = weakref.WeakKeyDictionary()
_strong_formats: dict[Any, CallFormat] = {}  # callables that cannot be weakly referenced


def call_format(function: Callable[..., Any]) -> CallFormat:
    """The cached `CallFormat` of a task function."""
    try:
        found = _formats.get(function)
    except TypeError:
        found = _strong_formats.get(function)
    if found is None:
        found = CallFormat(function)
        try:
            _formats[function] = found
        except TypeError:
            _strong_formats[function] = found
    return found
