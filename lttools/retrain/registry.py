"""The method registry: every stage-2 method by name (methods.py holds them, spec.py says what
a method is). Tests iterate over it; `lttools methods` lists it; params.yaml names its keys."""
from __future__ import annotations

from lttools.errors import unknown_name
from lttools.retrain.methods import METHODS as BUILTIN
from lttools.retrain.spec import Method


def _by_name(methods: list[Method]) -> dict[str, Method]:
    out: dict[str, Method] = {}
    for m in methods:
        if m.name in out:
            raise ValueError(f"method {m.name!r} defined twice")
        out[m.name] = m
    return out


METHODS: dict[str, Method] = _by_name(BUILTIN)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise unknown_name("method", name, list(METHODS))
    return METHODS[name]


def all_methods() -> dict[str, Method]:
    return dict(METHODS)
