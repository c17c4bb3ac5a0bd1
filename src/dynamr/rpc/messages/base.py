"""The bases of wire messages and of the records nested in them, and the registry of message tags."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from dynamr.rpc.messages.checks import Check, FieldError, checker

M = TypeVar("M", bound="Message")


class Record:
    """Base of records carried inside messages (a field typed ``R`` or ``tuple[R, ...]`` for a record class
    ``R``): encoded as the array of their field values, like a message body. Declared with :func:`record`."""

    FIELDS: ClassVar[tuple[str, ...]] = ()
    #: field name -> (record class, whether the field is a tuple of them), for records nested in this one
    NESTED: ClassVar[dict[str, tuple[type[Record], bool]]] = {}
    #: one checker per field, in field order (see :mod:`dynamr.rpc.messages.checks`)
    CHECKS: ClassVar[tuple[Check, ...]] = ()


class Message:
    """Base of all wire messages. Subclasses are registered with :func:`register`."""

    TAG: ClassVar[int] = -1
    FIELDS: ClassVar[tuple[str, ...]] = ()
    NESTED: ClassVar[dict[str, tuple[type[Record], bool]]] = {}
    CHECKS: ClassVar[tuple[Check, ...]] = ()


MESSAGE_TYPES: dict[int, type[Message]] = {}
R = TypeVar("R", bound=Record)


def _nested(cls: type) -> dict[str, tuple[type[Record], bool]]:
    """The fields of a dataclass that hold records (``R`` or ``tuple[R, ...]``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type[Record], bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            hint = next(a for a in args if a is not type(None))  # an optional record: None stays None
            args = typing.get_args(hint)
        if isinstance(hint, type) and issubclass(hint, Record):
            out[f.name] = (hint, False)
        elif (typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis
              and isinstance(args[0], type) and issubclass(args[0], Record)):
            out[f.name] = (args[0], True)
    return out


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def build(cls: type[Any], values: tuple[Any, ...]) -> Any:
    """An instance of a message or record class from its decoded field values, every field checked against
    its declared type (nested records built too). Raises :class:`FieldError` naming the field."""
    fields = cls.FIELDS
    if len(values) > len(fields):
        raise FieldError(f"{cls.__name__} has {len(fields)} fields, got {len(values)}")
    checks = cls.CHECKS
    kwargs = {}
    for i, value in enumerate(values):
        try:
            kwargs[fields[i]] = checks[i](value)
        except FieldError as exc:
            raise FieldError(f"{cls.__name__}.{fields[i]} {exc}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise FieldError(f"malformed {cls.__name__}: {exc}") from None


def _setup(cls: type[Any]) -> None:
    cls.FIELDS = tuple(f.name for f in dataclasses.fields(cls))
    cls.NESTED = _nested(cls)
    hints = typing.get_type_hints(cls)
    cls.CHECKS = tuple(checker(hints[name], _is_record, build) for name in cls.FIELDS)


def record(cls: type[R]) -> type[R]:
    """Class decorator (outside ``@dataclass``): make a dataclass a :class:`Record`."""
    _setup(cls)
    return cls


def register(tag: int) -> Callable[[type[M]], type[M]]:
    """Class decorator (outside ``@dataclass``): register a message class under a stable ``tag``."""

    def wrap(cls: type[M]) -> type[M]:
        if tag in MESSAGE_TYPES:
            raise ValueError(f"message tag {tag} used twice ({MESSAGE_TYPES[tag].__name__}, {cls.__name__})")
        cls.TAG = tag
        _setup(cls)
        MESSAGE_TYPES[tag] = cls
        return cls

    return wrap
