"""What a function declares, worked out once per function and cached.

The worker's hot path asks `plan_for(function)` on every run; the signature,
the type hints (`Annotated` metadata, with `from __future__ import annotations`
resolved) and the single-dependency rules are only inspected the first time.
A function with no dependencies gets a plan whose `trivial` is True, and the
worker then calls it with no resolution machinery at all.
"""

from __future__ import annotations

import inspect
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from .base import Dependency

FactoryKind = Literal["call", "generator", "async_generator"]


class Plan:
    """The dependencies of one function and how its arguments bind to names."""

    __slots__ = (
        "_conflicts_with",
        "error",
        "kind",
        "parameters",
        "positional",
        "trivial",
        "var_positional",
        "wrappers",
    )

    def __init__(self, function: Callable[..., Any]) -> None:
        # Parameter name -> the dependency that supplies its value.
        self.parameters: dict[str, Dependency] = {}
        # Parameter name -> dependencies in its `Annotated` metadata that wrap the run.
        self.wrappers: dict[str, tuple[Dependency, ...]] = {}
        self.positional: tuple[str, ...] = ()
        self.var_positional: str | None = None
        # Why this function cannot run (conflicting declarations), found up front.
        self.error: str | None = None
        self.kind: FactoryKind = _kind(function)
        self._conflicts_with: dict[tuple[int, ...], str | None] = {}
        self._inspect(function)
        self.trivial = not self.parameters and not self.wrappers and self.error is None

    def _inspect(self, function: Callable[..., Any]) -> None:
        # The plan must not keep the function alive: it is the cache's weak key.
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return
        hints = _type_hints(function, signature)
        positional: list[str] = []
        for name, parameter in signature.parameters.items():
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                positional.append(name)
            elif parameter.kind is parameter.VAR_POSITIONAL:
                self.var_positional = name
            suppliers: list[Dependency] = []
            wrappers: list[Dependency] = []
            for item in _metadata(hints.get(name)):
                (suppliers if item.supplies_value else wrappers).append(item)
            if isinstance(parameter.default, Dependency):
                suppliers.append(parameter.default)
            if len(suppliers) > 1:
                self.error = f"parameter {name!r} declares more than one dependency for its value"
            if suppliers:
                self.parameters[name] = suppliers[0]
            if wrappers:
                self.wrappers[name] = tuple(wrappers)
        self.positional = tuple(positional)
        if self.error is None:
            self.error = _single_conflict(self._declared())

    def _declared(self) -> list[tuple[str, Dependency]]:
        declared = list(self.parameters.items())
        for name, wrappers in self.wrappers.items():
            declared.extend((name, wrapper) for wrapper in wrappers)
        return declared

    def conflicts_with(self, worker_dependencies: Mapping[str, Dependency]) -> str | None:
        """A single-dependency clash between this task and its worker's dependencies."""
        identity = tuple(id(dependency) for dependency in worker_dependencies.values())
        if identity not in self._conflicts_with:
            worker = [(f"worker {name!r}", dep) for name, dep in worker_dependencies.items()]
            self._conflicts_with[identity] = _single_conflict([*self._declared(), *worker])
        return self._conflicts_with[identity]

    def supplied(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """Whether the caller passed an argument for parameter `name`."""
        if name in kwargs:
            return True
        try:
            return self.positional.index(name) < len(args)
        except ValueError:
            return False

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's arguments by parameter name (extra positionals under *args)."""
        bound: dict[str, Any] = dict(zip(self.positional, args, strict=False))
        if len(args) > len(self.positional) and self.var_positional is not None:
            bound[self.var_positional] = args[len(self.positional) :]
        bound.update(kwargs)
        return bound


def _kind(function: Callable[..., Any]) -> FactoryKind:
    if inspect.isasyncgenfunction(function):
        return "async_generator"
    if inspect.isgeneratorfunction(function):
        return "generator"
    return "call"


def _type_hints(function: Callable[..., Any], signature: inspect.Signature) -> dict[str, Any]:
    """Resolved annotations with `Annotated` extras; string ones only when resolvable."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        # Some name the function's module cannot resolve (a local class under
        # `from __future__ import annotations`, ...): resolve the others one by one.
        hints: dict[str, Any] = {}
        namespace = getattr(function, "__globals__", {})
        for name, parameter in signature.parameters.items():
            annotation = parameter.annotation
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, namespace)  # what get_type_hints does
                except Exception:
                    continue
            hints[name] = annotation
        return hints


def _metadata(hint: Any) -> list[Dependency]:
    """Dependencies in a hint's `Annotated` metadata (a bare class means an instance)."""
    if typing.get_origin(hint) is not Annotated:
        return []
    found: list[Dependency] = []
    for item in typing.get_args(hint)[1:]:
        if isinstance(item, Dependency):
            found.append(item)
        elif isinstance(item, type) and issubclass(item, Dependency):
            found.append(item())
    return found


def _single_conflict(declared: Iterable[tuple[str, Dependency]]) -> str | None:
    """Two dependencies sharing a `single` kind (two Retry, or Timeout + another Runtime)."""
    by_kind: dict[type, list[str]] = {}
    for where, dependency in declared:
        for kind in type(dependency).__mro__:
            if kind is not Dependency and issubclass(kind, Dependency) and kind.single:
                by_kind.setdefault(kind, []).append(f"{where} ({type(dependency).__name__})")
    for kind, places in by_kind.items():
        if len(places) > 1:
            return f"only one {kind.__name__} dependency is allowed, found {', '.join(places)}"
    return None


_plans: weakref.WeakKeyDictionary[Callable[..., Any], Plan] = weakref.WeakKeyDictionary()
_strong_plans: dict[Any, Plan] = {}  # callables that cannot be weakly referenced


def plan_for(function: Callable[..., Any]) -> Plan:
    """The cached plan of a task function or dependency factory."""
    try:
        plan = _plans.get(function)
    except TypeError:
        plan = _strong_plans.get(function)
    if plan is None:
        plan = Plan(function)
        try:
            _plans[function] = plan
        except TypeError:
            _strong_plans[function] = plan
    return plan
