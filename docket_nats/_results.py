"""Task return values and exceptions as stored bytes, and back.

Values are msgspec msgpack, decoded with the task's return annotation when the
reader knows the task (so a dataclass comes back as that dataclass). Exceptions
are stored as their type's import path, message, arguments and traceback text,
and rebuilt on the reader's side when that type can be imported; otherwise the
reader gets a `TaskFailed` naming it. Pickle is used only when the docket opted in
(`allow_pickle=True`), exactly as for arguments.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import traceback
import typing
from typing import Any

import msgspec

from ._wire import PICKLE_EXT, encode_value

logger = logging.getLogger("docket_nats.results")


class TaskFailed(Exception):
    """A task's exception whose type cannot be rebuilt where the result is read."""


class ResultUnavailable(Exception):
    """The task completed but its return value could not be stored (see the reason)."""


class StoredException(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    message: str
    args: bytes | None = None  # msgpack of the exception's args, when encodable
    traceback: str = ""
    pickled: bytes | None = None


def encode_result(value: Any, allow_pickle: bool) -> tuple[bytes | None, str | None]:
    """The stored form of a return value, or None and why it cannot be stored."""
    if value is None:
        return None, None
    try:
        return encode_value(value, allow_pickle), None
    except (TypeError, ValueError, OverflowError, pickle.PicklingError) as error:
        return None, (
            f"the return value ({type(value).__name__}) cannot be stored: {error}; return "
            "msgspec-encodable values or opt in with Docket(..., allow_pickle=True)"
        )


def decode_result(data: bytes, function: Any, allow_pickle: bool) -> Any:
    ext_hook = _unpickle if allow_pickle else _refuse
    hint = _return_hint(function)
    if hint is not None:
        try:
            return msgspec.msgpack.decode(data, type=hint, ext_hook=ext_hook)
        except (msgspec.ValidationError, TypeError):
            pass  # an annotation msgspec cannot use, or one the value does not fit
    return msgspec.msgpack.decode(data, ext_hook=ext_hook)


def encode_exception(error: BaseException, allow_pickle: bool) -> StoredException:
    kind = type(error)
    stored = StoredException(
        type=f"{kind.__module__}:{kind.__qualname__}",
        message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )
    try:
        stored.args = encode_value(list(error.args))
    except (TypeError, ValueError, OverflowError):
        pass  # rebuilt from its message instead
    if allow_pickle:
        try:
            stored.pickled = pickle.dumps(error)
        except Exception:  # (anything may fail to pickle; the rest still works)
            pass
    return stored


def decode_exception(stored: StoredException, allow_pickle: bool) -> BaseException:
    if allow_pickle and stored.pickled is not None:
        try:
            unpickled: object = pickle.loads(stored.pickled)
        except Exception:
            logger.debug("could not unpickle a stored exception of type %s", stored.type)
        else:
            if isinstance(unpickled, BaseException):
                return unpickled
    kind = _import_exception_type(stored.type)
    if kind is not None:
        args: list[Any] = (
            msgspec.msgpack.decode(stored.args, type=list[Any]) if stored.args else [stored.message]
        )
        try:
            return kind(*args)
        except Exception:  # (a constructor with other parameters)
            try:
                return kind(stored.message)
            except Exception:
                pass
    return TaskFailed(f"{stored.type.replace(':', '.')}: {stored.message}")


def _import_exception_type(path: str) -> type[BaseException] | None:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError):
        return None
    # Only exception types are ever instantiated from stored names.
    if isinstance(target, type) and issubclass(target, BaseException):
        return target
    return None


def _return_hint(function: Any) -> Any:
    if function is None:
        return None
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:  # (unresolvable annotations: decode untyped)
        return None
    return None if hint in (None, type(None), Any) else hint


def _unpickle(code: int, data: memoryview) -> Any:
    if code == PICKLE_EXT:
        return pickle.loads(data)
    return msgspec.msgpack.Ext(code, bytes(data))


def _refuse(code: int, data: memoryview) -> Any:
    raise ValueError(
        "the stored result is pickled but this docket does not allow pickle "
        "(Docket(..., allow_pickle=True) opts in; trusted systems only)"
    )
