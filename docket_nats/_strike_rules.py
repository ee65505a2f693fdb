"""Strike rules: what one rule says, how it is stored, and how it compares.

A rule names a task (or every task, `function=None`) and zero or more
conditions `parameter operator value`. It strikes a call when the task matches
and ALL of its conditions hold; several rules combine as "any rule strikes"
(docket's behavior). A rule with a task and no condition strikes the task.

Rules are stored in a KV bucket as msgspec msgpack. Values keep their type
(a Decimal stays a Decimal, a datetime a datetime) through a small tagged form,
so a worker compares the same thing the caller struck. The KV key is derived
from the rule itself, so striking twice is one rule and restoring the same
arguments deletes exactly that key.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import operator as operators
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal, cast

import msgspec
from uncalled_for import get_dependency_parameters

from ._subjects import encode_key


class Operator(enum.StrEnum):
    """How a condition compares a task's argument with the struck value (docket's names)."""

    EQUAL = "=="
    NOT_EQUAL = "!="
    GREATER_THAN = ">"
    GREATER_THAN_OR_EQUAL = ">="
    LESS_THAN = "<"
    LESS_THAN_OR_EQUAL = "<="
    BETWEEN = "between"


LiteralOperator = Literal["==", "!=", ">", ">=", "<", "<=", "between"]

_COMPARE: dict[Operator, Callable[[Any, Any], Any]] = {
    Operator.EQUAL: operators.eq,
    Operator.NOT_EQUAL: operators.ne,
    Operator.GREATER_THAN: operators.gt,
    Operator.GREATER_THAN_OR_EQUAL: operators.ge,
    Operator.LESS_THAN: operators.lt,
    Operator.LESS_THAN_OR_EQUAL: operators.le,
    Operator.BETWEEN: lambda argument, bounds: bounds[0] <= argument <= bounds[1],
}


# One condition ready to evaluate: (parameter, comparison, struck value).
Check = tuple[str, Callable[[Any, Any], Any], Any]


def compare(operator: Operator) -> Callable[[Any, Any], Any]:
    """The comparison of `operator`: (argument, struck value) -> truthy."""
    return _COMPARE[operator]


def as_operator(operator: Operator | str) -> Operator:
    try:
        return Operator(operator)
    except ValueError:
        known = ", ".join(each.value for each in Operator)
        raise ValueError(f"unknown strike operator {operator!r} (use one of {known})") from None


@dataclass(frozen=True)
class Condition:
    parameter: str
    operator: Operator
    value: Any

    def __str__(self) -> str:
        return f"{self.parameter} {self.operator.value} {self.value!r}"


@dataclass(frozen=True)
class Rule:
    """One strike rule as the strike list holds it."""

    key: str
    function: str | None
    conditions: tuple[Condition, ...]

    def __str__(self) -> str:
        inside = ", ".join(str(condition) for condition in self.conditions) or "*"
        return f"{self.function or '*'}({inside})"


# -- values: typed, deterministic, msgpack-friendly ------------------------------

_MSGPACK_INT = range(-(2**63), 2**64)


def pack_value(value: Any) -> Any:
    """A value in a form msgpack keeps exactly: natives as they are, the rest as [tag, ...]."""
    if value is None or isinstance(value, bool | str | bytes | float):
        return value
    if isinstance(value, enum.Enum):
        return pack_value(value.value)
    if isinstance(value, int):
        return value if value in _MSGPACK_INT else ["int", str(value)]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, datetime):  # before date: a datetime is a date
        return ["datetime", value.isoformat()]
    if isinstance(value, date):
        return ["date", value.isoformat()]
    if isinstance(value, time):
        return ["time", value.isoformat()]
    if isinstance(value, timedelta):
        return ["timedelta", value.days, value.seconds, value.microseconds]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    if isinstance(value, tuple | list):
        return ["tuple", *(pack_value(item) for item in value)]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, frozenset | set):
        packed = [pack_value(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
        return ["frozenset", *sorted(packed, key=_encoder.encode)]
    raise TypeError(
        f"cannot strike on a {type(value).__name__} value ({value!r}): use None, bool, int, "
        "float, str, bytes, Decimal, datetime, date, time, timedelta, UUID, an enum "
        "member, or a tuple of these"
    )


def unpack_value(packed: Any) -> Any:
    if not isinstance(packed, list):
        return packed
    items = cast(list[Any], packed)
    tag: Any = items[0]
    rest: list[Any] = items[1:]
    match tag:
        case "int":
            return int(rest[0])
        case "decimal":
            return Decimal(rest[0])
        case "datetime":
            return datetime.fromisoformat(rest[0])
        case "date":
            return date.fromisoformat(rest[0])
        case "time":
            return time.fromisoformat(rest[0])
        case "timedelta":
            return timedelta(days=rest[0], seconds=rest[1], microseconds=rest[2])
        case "uuid":
            return uuid.UUID(rest[0])
        case "tuple":
            return tuple(unpack_value(item) for item in rest)
        case "frozenset":
            return frozenset(unpack_value(item) for item in rest)
        case unknown:
            raise ValueError(f"unknown strike value tag {unknown!r}")


# -- storage ---------------------------------------------------------------------


class EncodedCondition(msgspec.Struct, array_like=True):
    parameter: str
    operator: str
    value: Any


class StoredRule(msgspec.Struct, kw_only=True):
    v: int = 1
    function: str | None = None
    conditions: list[EncodedCondition] = msgspec.field(default_factory=list[EncodedCondition])


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredRule)
# Stands for "every task" in KV keys: encode_key never makes '=' followed by non-hex.
_ALL_TASKS = "=all"


def encode_rule(
    function: str | None, conditions: list[tuple[str, Operator, Any]]
) -> tuple[str, bytes]:
    """(KV key, stored bytes) of a rule; the same rule always gives the same key."""
    stored = [EncodedCondition(p, o.value, pack_value(v)) for p, o, v in conditions]
    stored.sort(key=_encoder.encode)  # conditions are a set: order must not matter
    data = _encoder.encode(StoredRule(function=function, conditions=stored))
    digest = hashlib.sha256(data).hexdigest()[:32]
    return f"{encode_key(function) if function else _ALL_TASKS}.{digest}", data


class UndecodableRule(ValueError):
    """Bytes in the strikes bucket that are not a rule this version understands."""


def decode_rule(key: str, data: bytes) -> Rule:
    """The rule stored under `key`; raises UndecodableRule on anything else."""
    try:
        stored = _decoder.decode(data)
        return Rule(
            key=key,
            function=stored.function,
            conditions=tuple(
                Condition(c.parameter, as_operator(c.operator), unpack_value(c.value))
                for c in stored.conditions
            ),
        )
    # A tagged value may fail in its constructor any way (int("x"), timedelta
    # overflow, a missing item, uuid.UUID(5) an AttributeError): whatever the
    # bytes, one typed error.
    except (
        msgspec.DecodeError,
        ValueError,
        TypeError,
        IndexError,
        OverflowError,
        AttributeError,
    ) as error:
        raise UndecodableRule(f"not a strike rule: {error!r}") from error


# -- building a rule from docket's arguments ---------------------------------------


def _condition_spec(parameter: str, spec: Any) -> tuple[str, Operator, Any]:
    """A compound-rule keyword: `amount=(">", 1000)` or a plain value for `==`."""
    if isinstance(spec, tuple):
        pair = cast(tuple[Any, ...], spec)
        if len(pair) == 2 and isinstance(pair[0], str) and pair[0] in _OPERATOR_NAMES:
            return parameter, Operator(pair[0]), pair[1]
    plain: Any = cast(Any, spec)
    return parameter, Operator.EQUAL, plain


_OPERATOR_NAMES = frozenset(each.value for each in Operator)


def build_rule(
    function: str | None,
    task: Callable[..., Any] | None,
    parameter: str | None,
    operator: Operator | str,
    value: Any,
    conditions: Mapping[str, Any],
) -> tuple[str, bytes]:
    """Validate docket's strike/restore arguments; the rule's (key, bytes).

    Raises ValueError (unknown operator, a parameter `task` does not have, no
    task and no parameter) or TypeError (a value that cannot be stored) before
    anything is written.
    """
    specs: list[tuple[str, Operator, Any]] = []
    if parameter is not None:
        specs.append((parameter, as_operator(operator), value))
    else:
        as_operator(operator)  # an unknown operator is an error even when unused
    specs.extend(_condition_spec(name, spec) for name, spec in conditions.items())
    if function is None and not specs:
        raise ValueError("a strike needs a task, a parameter, or both")
    if task is not None:
        accepted = arguments_of(task)
        for name, _, _ in specs:
            if not accepted.has(name):
                raise ValueError(f"{function}() has no parameter {name!r} to strike on")
    checked: list[tuple[str, Operator, Any]] = []
    for name, op, item in specs:
        if op is Operator.BETWEEN:
            bounds = tuple(cast(list[Any], item)) if isinstance(item, tuple | list) else ()
            if len(bounds) != 2:
                raise ValueError(f"'between' takes a (low, high) pair, got {item!r}")
            item = bounds
        checked.append((name, op, item))
    return encode_rule(function, checked)


# -- reading one argument of a call without binding the whole signature -----------

MISSING: Any = object()


class Arguments:
    """Where each parameter of a task is found in a call's args / kwargs.

    Binding the full signature on every check would cost more than the rest of
    an add(); this answers "what is `parameter` in this call?" with dict looks.
    Parameters a dependency supplies (CurrentDocket(), Retry(), ...) are not
    arguments and never match.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.positions: dict[str, int] = {}
        self.defaults: dict[str, Any] = {}
        self.named: set[str] = set()
        self.open = False  # **kwargs: any keyword may be an argument
        try:
            parameters = inspect.signature(function).parameters.values()
            supplied = get_dependency_parameters(function)
        except (TypeError, ValueError):
            self.open = True
            return
        for index, parameter in enumerate(parameters):
            if parameter.kind is parameter.VAR_KEYWORD:
                self.open = True
                continue
            if parameter.kind is parameter.VAR_POSITIONAL or parameter.name in supplied:
                continue
            self.named.add(parameter.name)
            if parameter.kind is not parameter.KEYWORD_ONLY:
                self.positions[parameter.name] = index
            if parameter.default is not parameter.empty:
                self.defaults[parameter.name] = parameter.default

    def has(self, parameter: str) -> bool:
        return self.open or parameter in self.named

    def get(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], parameter: str) -> Any:
        found = kwargs.get(parameter, MISSING)
        if found is not MISSING:
            return found
        position = self.positions.get(parameter)
        if position is not None and position < len(args):
            return args[position]
        return self.defaults.get(parameter, MISSING)

    def read(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], parameters: Iterable[str]
    ) -> dict[str, Any]:
        """{parameter: argument} (MISSING when not given); enum members by value,
        as rules hold them. One call per check: this is the hot path."""
        values: dict[str, Any] = {}
        positions, defaults = self.positions, self.defaults
        for parameter in parameters:
            found = kwargs.get(parameter, MISSING)
            if found is MISSING:
                position = positions.get(parameter)
                if position is not None and position < len(args):
                    found = args[position]
                else:
                    found = defaults.get(parameter, MISSING)
            if isinstance(found, enum.Enum):
                found = found.value
            values[parameter] = found
        return values


# A plain dict: a WeakKeyDictionary makes a weak reference on every look-up,
# which costs more than the rest of a check. Task functions live as long as
# the process; a cache of many short-lived closures is cleared when it grows.
_arguments: dict[Callable[..., Any], Arguments] = {}
MAX_CACHED_FUNCTIONS = 4096


def arguments_of(function: Callable[..., Any]) -> Arguments:
    try:
        return _arguments[function]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable
        return Arguments(function)
    if len(_arguments) >= MAX_CACHED_FUNCTIONS:
        _arguments.clear()
    found = _arguments[function] = Arguments(function)
    return found


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
