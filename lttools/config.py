"""Typed configs from params.yaml sections: unknown keys (typos), missing required keys and
values of the wrong type (a number written as a string, `"no"` for a boolean) are errors
that name the section and key and say how to write the value."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from lttools.errors import LTError

T = TypeVar("T")

_WHAT = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
_PLURAL = {bool: "true / false values", int: "whole numbers", float: "numbers", str: "strings"}


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if origin in (list, tuple):
        (item, *_) = typing.get_args(kind) or (Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if origin in (list, tuple):
        (item, *_) = typing.get_args(kind) or (Any,)
        return f"a list of {_PLURAL.get(item, _describe(item))}"
    if kind is type(None):
        return "null"
    return _WHAT.get(kind, getattr(kind, "__name__", str(kind)))


def check_type(name: str, value: Any, kind: Any) -> None:
    """Raise LTError naming `name` when `value` is not of `kind` (bool, int, float, str, a
    union of these, or a list of them)."""
    if _matches(value, kind):
        return
    hint = ""
    if isinstance(value, str) and kind is not str:
        hint = "; write it without quotes"
        if _matches(True, kind):
            hint += " (true / false)"
    raise LTError(f"{name} = {value!r} must be {_describe(kind)}{hint}")


def from_section(cls: type[T], params: dict[str, Any], section: str) -> T:
    """Build dataclass `cls` from a params section: every key known, every required key
    present, every value of its field's type; then the dataclass's own `validate()`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise LTError(f"{section}: unknown key(s) {', '.join(unknown)}; valid keys: "
                      f"{', '.join(sorted(fields))}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in params]
    if missing:
        raise LTError(f"{section}: missing required key(s) {', '.join(missing)}")
    for name, value in params.items():
        check_type(f"{section}.{name}", value, hints[name])
    cfg = cls(**params)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg
