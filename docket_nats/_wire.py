"""The wire format: msgspec msgpack envelopes and the typed argument codec.

This is the only module that turns task data into bytes and back. Arguments are
encoded one by one (so an argument msgspec cannot encode fails at `add()` with the
parameter's name) and decoded on the worker with the task's type annotations, so a
dataclass argument arrives as that dataclass. Pickle is an explicit opt-in on both
sides: a worker that did not opt in refuses pickled arguments instead of running
code from the wire.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

logger = logging.getLogger("docket_nats.wire")

ENVELOPE_VERSION = 1
PICKLE_EXT = 42


class TaskEnvelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task on the wire (the subject carries the key, the body repeats it)."""

    v: int = ENVELOPE_VERSION
    key: str
    function: str
    when: datetime
    args: list[msgspec.Raw] = msgspec.field(default_factory=list[msgspec.Raw])
    kwargs: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict[str, msgspec.Raw])
    attempt: int = 1


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What can never run, parked with the reason (the original bytes kept whole)."""

    v: int = ENVELOPE_VERSION
    key: str
    reason: str
    function: str | None = None
    parked_at: datetime
    worker: str | None = None
    data: bytes = b""
    # Its sequence in the dead-letter stream: set when read, never stored (0
    # until then). `purge_dead_letters(key, up_to_sequence=...)` takes it.
    sequence: int = 0


class UndecodableMessage(ValueError):
    """The bytes of a message are not a task envelope."""


class ArgumentError(ValueError):
    """The arguments of a task do not fit its function."""


def _refuse_pickle(obj: Any) -> Any:
    raise TypeError(f"objects of type {type(obj).__name__} are not supported")


def _pickle_object(obj: Any) -> Any:
    return msgspec.msgpack.Ext(PICKLE_EXT, pickle.dumps(obj))


def _refuse_ext(code: int, data: memoryview) -> Any:
    if code == PICKLE_EXT:
        raise ArgumentError(
            "a pickled argument arrived but this worker does not allow pickle "
            "(Docket(..., allow_pickle=True) on both sides opts in; trusted systems only)"
        )
    raise ArgumentError(f"unknown msgpack extension type {code}")


def _unpickle_ext(code: int, data: memoryview) -> Any:
    if code == PICKLE_EXT:
        return pickle.loads(data)
    return _refuse_ext(code, data)


_safe_encoder = msgspec.msgpack.Encoder(enc_hook=_refuse_pickle)
_pickling_encoder = msgspec.msgpack.Encoder(enc_hook=_pickle_object)
_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(TaskEnvelope)
_dead_letter_decoder = msgspec.msgpack.Decoder(DeadLetter)


# What an encoder raises for a value it cannot encode (the enc_hooks included).
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, pickle.PicklingError)


def encode_value(value: Any, allow_pickle: bool = False) -> bytes:
    return (_pickling_encoder if allow_pickle else _safe_encoder).encode(value)


def encode_envelope(envelope: TaskEnvelope | DeadLetter) -> bytes:
    return _envelope_encoder.encode(envelope)


def decode_envelope(data: bytes) -> TaskEnvelope:
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise UndecodableMessage(f"not a task envelope: {error}") from error
    if envelope.v > ENVELOPE_VERSION:
        raise UndecodableMessage(
            f"envelope version {envelope.v} is newer than this worker's ({ENVELOPE_VERSION})"
        )
    return envelope


def decode_dead_letter(data: bytes) -> DeadLetter:
    return _dead_letter_decoder.decode(data)


class TaskSignature:
    """A task function's parameters with the decoders of their annotated types."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.signature = inspect.signature(function)
        hints = _type_hints(function)
        self._positional: list[inspect.Parameter] = []
        self._var_positional: inspect.Parameter | None = None
        self._var_keyword: inspect.Parameter | None = None
        self._decoders: dict[str, tuple[msgspec.msgpack.Decoder[Any], ...]] = {}
        for parameter in self.signature.parameters.values():
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                self._positional.append(parameter)
            elif parameter.kind is parameter.VAR_POSITIONAL:
                self._var_positional = parameter
            elif parameter.kind is parameter.VAR_KEYWORD:
                self._var_keyword = parameter
            self._decoders[parameter.name] = _decoders_for(hints.get(parameter.name, Any))

    def parameter_name(self, index: int) -> str:
        if index < len(self._positional):
            return self._positional[index].name
        if self._var_positional is not None:
            return f"{self._var_positional.name}[{index - len(self._positional)}]"
        return f"positional argument {index}"

    def encode(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], allow_pickle: bool
    ) -> tuple[list[msgspec.Raw], dict[str, msgspec.Raw]]:
        """Encode each argument on its own, naming the parameter on failure."""
        encoder = _pickling_encoder if allow_pickle else _safe_encoder
        encoded_args: list[msgspec.Raw] = []
        for index, value in enumerate(args):
            try:
                encoded_args.append(msgspec.Raw(encoder.encode(value)))
            except _ENCODE_ERRORS as error:
                raise self._unencodable(self.parameter_name(index), error) from error
        encoded_kwargs: dict[str, msgspec.Raw] = {}
        for name, value in kwargs.items():
            try:
                encoded_kwargs[name] = msgspec.Raw(encoder.encode(value))
            except _ENCODE_ERRORS as error:
                raise self._unencodable(name, error) from error
        return encoded_args, encoded_kwargs

    def function_name(self) -> str:
        return getattr(self.function, "__name__", repr(self.function))

    def _unencodable(self, name: str, error: BaseException) -> TypeError:
        return TypeError(
            f"argument {name!r} of {self.function_name()}() cannot be sent to a worker: "
            f"{error}. Use types msgspec encodes (primitives, datetime, UUID, Decimal, "
            "enums, dataclasses, msgspec Structs, ...) or opt in to pickle with "
            "Docket(..., allow_pickle=True)"
        )

    def decode(
        self, envelope: TaskEnvelope, allow_pickle: bool
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Decode the arguments with the annotated types and check they bind."""
        slot = 1 if allow_pickle else 0
        args: list[Any] = []
        for index, raw in enumerate(envelope.args):
            if index < len(self._positional):
                name = self._positional[index].name
            elif self._var_positional is not None:
                name = self._var_positional.name
            else:
                raise ArgumentError(
                    f"{self.function_name()}() takes {len(self._positional)} positional "
                    f"arguments but {len(envelope.args)} were sent"
                )
            args.append(self._decode_one(name, self._decoders[name], slot, raw))
        kwargs: dict[str, Any] = {}
        for name, raw in envelope.kwargs.items():
            decoders = self._decoders.get(name)
            if decoders is None:
                if self._var_keyword is None:
                    raise ArgumentError(
                        f"{self.function_name()}() got an unexpected keyword argument {name!r}"
                    )
                decoders = self._decoders[self._var_keyword.name]
            kwargs[name] = self._decode_one(name, decoders, slot, raw)
        return tuple(args), kwargs

    def _decode_one(
        self,
        name: str,
        decoders: tuple[msgspec.msgpack.Decoder[Any], ...],
        slot: int,
        raw: Any,
    ) -> Any:
        try:
            return decoders[slot].decode(raw)
        except msgspec.ValidationError as error:
            # The value does not fit the annotation. docket hands a task whatever
            # it was given (annotations are not enforced in Python), so do the
            # same rather than refuse to run it: pass the plain decoded value.
            logger.warning(
                "argument %r of %s() does not match its annotation (%s); passing it as sent",
                name,
                self.function_name(),
                error,
            )
        except msgspec.DecodeError as error:
            raise ArgumentError(
                f"argument {name!r} of {self.function_name()}() does not decode: {error}"
            ) from error
        try:
            return _decoders_for(Any)[slot].decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ArgumentError(
                f"argument {name!r} of {self.function_name()}() does not decode: {error}"
            ) from error


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations, one by one when not all resolve.

    With string annotations (`from __future__ import annotations`) a single name
    that cannot be resolved at run time (a TYPE_CHECKING-only import, a class local
    to another function) makes `get_type_hints` fail for the whole function; the
    other parameters must keep their types. An unresolvable one decodes as a
    plain msgpack value.
    """
    try:
        return typing.get_type_hints(function)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    annotations: dict[str, Any] = getattr(function, "__annotations__", None) or {}
    for name, annotation in annotations.items():
        holder = _AnnotationHolder({name: annotation}, inspect.unwrap(function))
        try:
            hints[name] = typing.get_type_hints(holder)[name]
        except Exception:
            continue
    return hints


class _AnnotationHolder:
    """One annotation with the globals of the function it came from."""

    def __init__(self, annotations: dict[str, Any], function: Callable[..., Any]) -> None:
        self.__annotations__ = annotations
        self.__globals__ = getattr(function, "__globals__", {})


@lru_cache(maxsize=1024)
def _decoders_for(
    hint: Any,
) -> tuple[msgspec.msgpack.Decoder[Any], msgspec.msgpack.Decoder[Any]]:
    """(safe, pickle-allowing) decoders for one annotation; Any when msgspec can't type it."""
    try:
        return (
            msgspec.msgpack.Decoder(hint, ext_hook=_refuse_ext),
            msgspec.msgpack.Decoder(hint, ext_hook=_unpickle_ext),
        )
    except TypeError:
        return _decoders_for(Any)


_signatures: dict[Callable[..., Any], TaskSignature] = {}


def task_signature(function: Callable[..., Any]) -> TaskSignature:
    """The (cached) TaskSignature of a function."""
    found = _signatures.get(function)
    if found is None:
        found = _signatures[function] = TaskSignature(function)
    return found
