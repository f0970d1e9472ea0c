"""Checking a process state edit against the definition's dataclass, before anything is stored.

A state is JSON: each field of the definition's dataclass holds the JSON form of its annotated
type, as DjangoJSONEncoder writes it (datetimes, dates, times and durations as ISO 8601 strings,
Decimals and UUIDs as strings). `check_fields` says, for every field given, whether its value fits:

    int, float (an int is a float too; a bool is neither), str, bool, None
    X | None, Optional[X], Union[...], Literal[...], Enum subclasses (their values)
    list[X], tuple[X, ...], tuple[A, B], set[X], frozenset[X], Sequence[X]   -> a JSON array
    dict[str, X], Mapping[str, X]                                            -> a JSON object
    a nested dataclass                -> a JSON object of its fields (the same rules, recursively)
    datetime, date, time, timedelta, Decimal, UUID   -> a string that parses as one
    Any, object, an annotation that cannot be resolved, any other class    -> any JSON

The limits are REST's (one rule for every door): nesting at most values.MAX_DEPTH (64) levels, no NUL
characters, unpaired surrogates or non-finite numbers (values.check_storable), and the
encoded state at most SLCT_MAX_VALUE_BYTES (values.to_json).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime, parse_duration, parse_time

from slct_workflows.values import MAX_DEPTH, check_storable

MAX_ERRORS = 10
_ANY = object()  # "accept any JSON"


class StateError(ValueError):
    """The state edit does not fit the definition; `problems` lists each ("where: what")."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_ERRORS]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        super().__init__("; ".join(shown) + more)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a string)")


def loads(text: str) -> Any:
    """Parse JSON text as the REST API does (no NaN/Infinity): ValueError with a clear message
    otherwise, also for text nested too deep for the parser (never a RecursionError). The
    limits are the service's to check (set_state)."""

    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"this is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    return value


def check_limits(value: Any, where: str = "state") -> None:
    """REST's nesting and storability rules (ValueError). Safe on any depth: it stops at the limit."""

    try:
        check_storable(value, where=where)
    except RecursionError:  # cannot happen below MAX_DEPTH, but never a 500
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep") from None


# -- the type rules ---------------------------------------------------------------------------

def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (`_ANY` where it cannot be resolved)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a forward reference to a name the module does not have, say
        hints = {}
    types_: dict[str, Any] = {}
    module = sys.modules.get(cls.__module__)
    for f in dataclasses.fields(cls):
        if f.name in hints:
            types_[f.name] = hints[f.name]
        elif isinstance(f.type, str):
            try:
                types_[f.name] = eval(f.type, vars(module) if module else {}, dict(vars(cls)))  # noqa: S307
            except Exception:
                types_[f.name] = _ANY
        else:
            types_[f.name] = f.type
    return types_


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _got(value: Any) -> str:
    return "null" if value is None else f"{_kind(value)} ({_show(value)})"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(tp: Any) -> str:
    """A reader's name for what a type expects in JSON."""
    if tp is _ANY or tp is Any or tp is object:
        return "any JSON value"
    if tp is None or tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if origin is typing.Annotated:
        return describe(args[0])
    simple = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
              dt.datetime: "a date-time string (ISO 8601)", dt.date: "a date string (YYYY-MM-DD)",
              dt.time: "a time string (HH:MM[:ss[.uuuuuu]])", dt.timedelta: "a duration string (ISO 8601 or [DD] HH:MM:SS)",
              Decimal: "a decimal number as a string", uuid.UUID: "a UUID string"}
    if isinstance(tp, type) and tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(_show(m.value) for m in tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return f"an object of {tp.__name__}'s fields"
    if origin is not None and isinstance(origin, type):
        if issubclass(origin, Mapping):
            return f"an object of {describe(args[1])}" if len(args) == 2 else "an object"
        if issubclass(origin, (Sequence, set, frozenset)) and not issubclass(origin, str):
            return "an array"
    if tp in (list, tuple, set, frozenset):
        return "an array"
    if tp is dict:
        return "an object"
    return "any JSON value"


def _parses(parser: Any, value: str) -> bool:
    try:
        return parser(value) is not None
    except (ValueError, TypeError, OverflowError):
        return False


def _decimal(value: str) -> bool:
    try:
        Decimal(value)
    except (InvalidOperation, ValueError):
        return False
    return True


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


STRING_TYPES = {
    dt.datetime: lambda v: _parses(parse_datetime, v),
    dt.date: lambda v: _parses(parse_date, v),
    dt.time: lambda v: _parses(parse_time, v),
    dt.timedelta: lambda v: _parses(parse_duration, v),
    Decimal: _decimal,
    uuid.UUID: _uuid,
}


def check_value(value: Any, tp: Any, where: str, problems: list[str]) -> None:
    """Append to `problems` every place where `value` does not fit `tp`."""
    if tp is _ANY or tp is Any or tp is object:
        return
    if tp is None or tp is type(None):
        if value is not None:
            problems.append(f"{where}: expected null, got {_got(value)}")
        return
    if isinstance(tp, typing.NewType):
        check_value(value, tp.__supertype__, where, problems)
        return
    if isinstance(tp, typing.TypeVar):
        return
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        check_value(value, args[0], where, problems)
        return
    if origin in (typing.Union, types.UnionType):
        # Fits if any arm fits. Else, if one arm has the value's shape (an object for a dataclass
        # arm, say), what is wrong inside it; if none does, what was expected.
        inside: list[str] | None = None
        for arm in args:
            arm_problems: list[str] = []
            check_value(value, arm, where, arm_problems)
            if not arm_problems:
                return
            if inside is None and not arm_problems[0].startswith(f"{where}: expected"):
                inside = arm_problems
        problems.extend(inside or [f"{where}: expected {describe(tp)}, got {_got(value)}"])
        return
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            problems.append(f"{where}: expected {describe(tp)}, got {_show(value)}")
        return
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected a boolean, got {_got(value)}")
        return
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}: expected an integer, got {_got(value)}")
        return
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{where}: expected a number, got {_got(value)}")
        return
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {_got(value)}")
        return
    if isinstance(tp, type) and tp in STRING_TYPES:
        if not isinstance(value, str) or not STRING_TYPES[tp](value):
            problems.append(f"{where}: expected {describe(tp)}, got {_got(value)}")
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if not any(value == m.value and type(value) is type(m.value) for m in tp):
            problems.append(f"{where}: expected {describe(tp)}, got {_show(value)}")
        return
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected {describe(tp)}, got {_got(value)}")
            return
        check_object(tp, value, where, problems, complete=True)
        return
    container = origin if origin is not None else tp
    if not isinstance(container, type):
        return  # a typing construct we do not know: any JSON
    if issubclass(container, Mapping):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected {describe(tp)}, got {_got(value)}")
            return
        if len(args) == 2:
            for key, item in value.items():
                check_value(item, args[1], f"{where}[{_show(key)}]", problems)
        return
    if issubclass(container, (Sequence, set, frozenset)) and not issubclass(container, (str, bytes)):
        if not isinstance(value, list):
            problems.append(f"{where}: expected {describe(tp)}, got {_got(value)}")
            return
        if issubclass(container, tuple) and args and not (len(args) == 2 and args[1] is Ellipsis):
            if args == ((),):  # tuple[()]
                args = ()
            if len(value) != len(args):
                problems.append(f"{where}: expected an array of {len(args)} items, got {len(value)}")
                return
            for i, (item, item_tp) in enumerate(zip(value, args)):
                check_value(item, item_tp, f"{where}[{i}]", problems)
            return
        if args:
            for i, item in enumerate(value):
                check_value(item, args[0], f"{where}[{i}]", problems)
        return
    # Any other class (a user type the definition converts itself): any JSON.


def check_object(cls: type, value: dict, where: str, problems: list[str], *, complete: bool) -> None:
    """`value`'s keys are fields of dataclass `cls` and each value fits its field. With `complete`,
    fields without a default must be present."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    unknown = sorted(k for k in value if k not in fields)
    if unknown:
        problems.append(f"{prefix.rstrip('.') + ': ' if where else ''}{cls.__name__} has no fields {unknown}")
    if complete:
        missing = [
            name for name, f in fields.items()
            if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            problems.append(f"{where or cls.__name__}: {cls.__name__}'s fields {missing} are missing")
    hints = field_types(cls)
    for name, item in value.items():
        if name in fields:
            check_value(item, hints.get(name, _ANY), f"{prefix}{name}", problems)


def check_fields(cls: type, state: dict) -> None:
    """Raise StateError unless every field in `state` is a field of `cls` holding a fitting value
    (fields left out are not looked at: a partial edit keeps them)."""
    problems: list[str] = []
    check_object(cls, state, "", problems, complete=False)
    if problems:
        raise StateError(problems)
