"""What a function declares, worked out once per function and cached.

The worker's hot path asks `plan_for(function)` on every run. The declarations
themselves come from uncalled-for's introspection (the same rules as docket:
dependency defaults, `Annotated` providers and wrappers); the plan adds what
a run needs on top, cached: whether there is anything to resolve at all
(`trivial`: the worker then calls the function with no resolution machinery),
how positional arguments bind to names, and the single-dependency clashes with
a worker's own dependencies.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from uncalled_for import get_annotation_dependencies, get_dependency_parameters

from ._base import Dependency


class Plan:
    """The dependencies of one function and how its arguments bind to names."""

    __slots__ = (
        "_conflicts_with",
        "annotations",
        "parameters",
        "positional",
        "trivial",
        "var_positional",
    )

    def __init__(self, function: Callable[..., Any]) -> None:
        # Parameter name -> the dependency that supplies its value.
        self.parameters: Mapping[str, Dependency[Any]] = {}
        # Parameter name -> dependencies in its `Annotated` metadata that wrap the run.
        self.annotations: Mapping[str, Sequence[Dependency[Any]]] = {}
        self.positional: tuple[str, ...] = ()
        self.var_positional: str | None = None
        self._conflicts_with: dict[tuple[int, ...], list[tuple[str, ValueError]]] = {}
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            signature = None  # a callable we cannot inspect declares nothing
        if signature is not None:
            self.parameters = get_dependency_parameters(function)
            self.annotations = get_annotation_dependencies(function)
            positional: list[str] = []
            for name, parameter in signature.parameters.items():
                if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                    positional.append(name)
                elif parameter.kind is parameter.VAR_POSITIONAL:
                    self.var_positional = name
            self.positional = tuple(positional)
        self.trivial = not self.parameters and not self.annotations

    def declared(self) -> list[tuple[str, Dependency[Any]]]:
        """Every dependency the function declares, with the parameter it is on."""
        declared: list[tuple[str, Dependency[Any]]] = list(self.parameters.items())
        for name, wrappers in self.annotations.items():
            declared.extend((name, wrapper) for wrapper in wrappers)
        return declared

    def conflicts_with(
        self, worker_dependencies: Mapping[str, Dependency[Any]]
    ) -> list[tuple[str, ValueError]]:
        """Single-dependency clashes between this task and its worker's dependencies."""
        identity = tuple(id(dependency) for dependency in worker_dependencies.values())
        conflicts = self._conflicts_with.get(identity)
        if conflicts is None:
            conflicts = single_conflicts(self.declared(), worker_dependencies)
            self._conflicts_with[identity] = conflicts
        return conflicts

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


def single_conflicts(
    task: Iterable[tuple[str, Dependency[Any]]], worker: Mapping[str, Any]
) -> list[tuple[str, ValueError]]:
    """Single kinds declared both by a task and by its worker, as (slot, error).

    A kind is a `single` class (two Retry) or a `single` base of two different
    classes (Runtime: Timeout and a custom one). Clashes within the task alone
    are refused when it is registered (`validate_dependencies`).
    """
    entries: list[tuple[str, Dependency[Any]]] = [
        *((f"task {name!r}", dependency) for name, dependency in task),
        *((f"worker {name!r}", dependency) for name, dependency in worker.items()),
    ]
    conflicts: list[tuple[str, ValueError]] = []
    by_class: dict[type, list[str]] = {}
    for where, dependency in entries:
        by_class.setdefault(type(dependency), []).append(where)
    reported: set[type] = set()
    for cls, found in by_class.items():
        if getattr(cls, "single", False) and len(found) > 1:
            conflicts.append(_conflict(cls, found))
            reported.add(cls)
    bases = {kind for _, dependency in entries for kind in _single_kinds(type(dependency))}
    for base in bases - reported:
        found_classes = [(where, type(dep)) for where, dep in entries if isinstance(dep, base)]
        if len({cls for _, cls in found_classes}) > 1:
            conflicts.append(
                _conflict(base, [f"{where} ({cls.__name__})" for where, cls in found_classes])
            )
    return conflicts


def _conflict(kind: type, places: list[str]) -> tuple[str, ValueError]:
    return (
        f"__conflict_{kind.__name__}__",
        ValueError(
            f"Only one {kind.__name__} dependency is allowed, but found at: "
            f"{', '.join(places)}; declare it on the task or on the worker, not both"
        ),
    )


def _single_kinds(cls: type) -> list[type]:
    return [
        kind
        for kind in cls.__mro__
        if kind is not Dependency and issubclass(kind, Dependency) and kind.single
    ]


_plans: weakref.WeakKeyDictionary[Callable[..., Any], Plan] = weakref.WeakKeyDictionary()
_strong_plans: dict[Any, Plan] = {}  # callables that cannot be weakly referenced


def plan_for(function: Callable[..., Any]) -> Plan:
    """The cached plan of a task function."""
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
