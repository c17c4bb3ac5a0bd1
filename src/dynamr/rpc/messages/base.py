"""The bases of wire messages and of the records nested in them, and the registry of message tags."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from dynamr.rpc.messages.checks import Check, FieldError, checker

M = TypeVar("M", bound="Message")
T = TypeVar("T")


class _Derived(Generic[T]):
    """A class attribute worked out from a message or record class's fields on first use (see :func:`_setup`),
    then stored on that class, where every later lookup finds it without coming here. Working these out
    for every class at import took a third of the time to import the messages, which every process
    (each task process too) pays when it starts."""

    def __init__(self, empty: T) -> None:
        self.empty = empty
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> T:
        owner = cls if cls is not None else type(obj)
        if not dataclasses.is_dataclass(owner):
            return self.empty  # a base class itself
        _setup(owner)
        value: T = owner.__dict__[self.name]
        return value


class Record:
    """Base of records carried inside messages (a field typed ``R`` or ``tuple[R, ...]`` for a record class
    ``R``): encoded as the array of their field values, like a message body. Declared with :func:`record`."""

    #: the field names, in order
    FIELDS = _Derived[tuple[str, ...]](())
    #: field name -> (record class, whether the field is a tuple of them), for records nested in this one
    NESTED = _Derived[dict[str, tuple[type["Record"], bool]]]({})
    #: one checker per field, in field order (see :mod:`dynamr.rpc.messages.checks`)
    CHECKS = _Derived[tuple[Check, ...]](())


class Message:
    """Base of all wire messages. Subclasses are registered with :func:`register`."""

    TAG: ClassVar[int] = -1
    FIELDS = _Derived[tuple[str, ...]](())
    NESTED = _Derived[dict[str, tuple[type[Record], bool]]]({})
    CHECKS = _Derived[tuple[Check, ...]](())


#: every record class (see :func:`record`), for a test that sets each one up
RECORD_TYPES: list[type[Record]] = []
MESSAGE_TYPES: dict[int, type[Message]] = {}
R = TypeVar("R", bound=Record)


def _nested(cls: type, hints: dict[str, object]) -> dict[str, tuple[type[Record], bool]]:
    """The fields of a dataclass that hold records (``R`` or ``tuple[R, ...]``)."""
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
    """Work out a class's FIELDS, NESTED and CHECKS (once: they then sit on the class itself). Raises
    TypeError for a field type no checker exists for."""
    if "CHECKS" in cls.__dict__:
        return
    hints = typing.get_type_hints(cls)
    fields = tuple(f.name for f in dataclasses.fields(cls))
    checks = tuple(checker(hints[name], _is_record, build) for name in fields)
    cls.FIELDS = fields
    cls.NESTED = _nested(cls, hints)
    cls.CHECKS = checks  # last: its presence says the class is set up


def record(cls: type[R]) -> type[R]:
    """Class decorator (outside ``@dataclass``): make a dataclass a :class:`Record`."""
    _direct(cls)
    RECORD_TYPES.append(cls)
    return cls


def _direct(cls: type) -> None:
    """Message and record classes do not inherit from one another (a subclass would find its parent's
    FIELDS, NESTED and CHECKS)."""
    if any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: a message or record class must not subclass another one")


def register(tag: int) -> Callable[[type[M]], type[M]]:
    """Class decorator (outside ``@dataclass``): register a message class under a stable ``tag``."""

    def wrap(cls: type[M]) -> type[M]:
        if tag in MESSAGE_TYPES:
            raise ValueError(f"message tag {tag} used twice ({MESSAGE_TYPES[tag].__name__}, {cls.__name__})")
        _direct(cls)
        cls.TAG = tag
        MESSAGE_TYPES[tag] = cls
        return cls

    return wrap
