"""Field checkers: every field of a message or record validated against its declared type on decode.

:func:`checker` turns a field's type hint into a function that returns the value (converted where the
wire form differs: an array of records becomes a tuple of record instances, an integer given for a float
becomes a float) or raises :class:`FieldError`. Checkers are built once per class, on its first use, so
decoding a message costs one small function call per field. A hint this module cannot check is a
programming error: the class refuses to be used, and a unit test uses every class, so no field ever goes
unchecked.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], Any]


class FieldError(ValueError):
    """A decoded value does not have its field's declared type."""


_NAMES = {int: "an integer", float: "a number", str: "a string", bytes: "bytes", bool: "a boolean"}


def _exact(kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise FieldError(f"must be {_NAMES[kind]}, not {type(value).__name__}")
        return value

    return check


def _float(value: Any) -> Any:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise FieldError(f"must be a number, not {type(value).__name__}")


def _optional(inner: Check) -> Check:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _many(inner: Check, identity: bool) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not tuple:
            raise FieldError(f"must be an array, not {type(value).__name__}")
        if identity:
            for item in value:
                inner(item)
            return value
        return tuple(inner(item) for item in value)

    return check


def _fixed(inners: tuple[Check, ...]) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not tuple or len(value) != len(inners):
            raise FieldError(f"must be an array of {len(inners)} items")
        return tuple(inner(item) for inner, item in zip(inners, value, strict=True))

    return check


def _record(cls: type, build: Callable[[type, tuple[Any, ...]], Any]) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not tuple:
            raise FieldError(f"must be a {cls.__name__} record (an array)")
        return build(cls, value)

    return check


def checker(hint: Any, is_record: Callable[[Any], bool], build: Callable[[type, tuple[Any, ...]], Any]) -> Check:
    """The checker for one type hint; ``is_record`` tells record classes, ``build`` decodes one."""
    if hint is float:
        return _float
    if hint in _NAMES:
        return _exact(hint)
    if is_record(hint):
        return _record(hint, build)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return _optional(checker(next(a for a in args if a is not type(None)), is_record, build))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        identity = args[0] in _NAMES and args[0] is not float
        return _many(checker(args[0], is_record, build), identity)
    if origin is tuple and args and Ellipsis not in args:
        return _fixed(tuple(checker(a, is_record, build) for a in args))
    raise TypeError(f"no wire check for fields of type {hint!r}")
