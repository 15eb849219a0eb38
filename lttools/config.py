"""Typed configs from params.yaml sections: unknown keys (typos) and missing required keys
are errors that name the section and list the valid keys."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from lttools.errors import LTError

T = TypeVar("T")


def from_section(cls: type[T], params: dict[str, Any], section: str,
                 also_valid: tuple[str, ...] = ()) -> T:
    """Build dataclass `cls` from a params section; keys in `also_valid` are read elsewhere
    (by the stage itself) and are accepted but not passed on."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields) - set(also_valid))
    if unknown:
        raise LTError(f"{section}: unknown key(s) {', '.join(unknown)}; valid keys: "
                      f"{', '.join(sorted([*fields, *also_valid]))}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in params]
    if missing:
        raise LTError(f"{section}: missing required key(s) {', '.join(missing)}")
    cfg = cls(**{k: v for k, v in params.items() if k in fields})
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg
