"""From `-S` overrides to the points of a sweep, each named, and grouped by the backbone they
need: points whose overrides agree on every param the expensive stages read share one
backbone job."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from lttools.errors import LTError

# the stages a backbone job runs; the rest of a point runs after it and restores these from
# DVC's run cache
EXPENSIVE_STAGES = ("prepare_data", "train_backbone", "extract_features")
LAST_EXPENSIVE = EXPENSIVE_STAGES[-1]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Point:
    name: str
    overrides: tuple[str, ...]  # `key=value`, as `dvc exp run -S` takes them
    group: int  # the backbone group


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of the comma-separated values, as `dvc exp run --queue -S` expands
    them (DVC's own parser)."""
    from dvc.utils.hydra import get_hydra_sweeps

    for item in overrides:
        if "=" not in item:
            raise LTError(f"-S {item!r}: write key=value (or key=a,b,c for a sweep)")
    try:
        sweeps = get_hydra_sweeps({"params.yaml": list(overrides)})
    except Exception as exc:  # hydra's grammar errors carry their own message
        raise LTError(f"the overrides do not parse: {exc}") from exc
    return [s["params.yaml"] for s in sweeps]


def expensive_sections(dvc_yaml: Path) -> set[str]:
    """The params sections (or keys) the expensive stages list in dvc.yaml."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    found: set[str] = set()
    for name in EXPENSIVE_STAGES:
        stage = stages.get(name, {})
        foreach = stage.get("foreach")
        if isinstance(foreach, str) and foreach.startswith("${") and foreach.endswith("}"):
            found.add(foreach[2:-1])  # the replicates: a new seed is a new backbone
        for entry in stage.get("do", stage).get("params", []):
            found |= set(entry) if isinstance(entry, dict) else {entry}
    return found


def _reads(key: str, sections: set[str]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


def make_points(overrides: list[str], prefix: str, dvc_yaml: Path,
                params: dict | None = None) -> list[Point]:
    """The sweep's points, named `<prefix>-<n>`, each with its backbone group."""
    if not NAME.match(prefix):
        raise LTError(f"--name {prefix!r}: use letters, digits, '-', '_' and '.' (a Git ref)")
    sections = expensive_sections(dvc_yaml)
    if params is not None:
        for item in overrides:
            if not item.startswith(("+", "~")):  # DVC's add / delete syntax
                _check_key(item.split("=", 1)[0], params)
    groups: dict[tuple[str, ...], int] = {}
    points = []
    for i, combo in enumerate(expand(overrides)):
        key = tuple(sorted(o for o in combo if _reads(o.split("=", 1)[0], sections)))
        group = groups.setdefault(key, len(groups))
        points.append(Point(f"{prefix}-{i + 1}", tuple(combo), group))
    return points


def _check_key(key: str, params: dict) -> None:
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise LTError(f"-S {key}: params.yaml has no such key (DVC would refuse it); "
                          "`lttools methods` lists the methods' params")
        node = node[part]


def backbone_overrides(point: Point, dvc_yaml: Path) -> list[str]:
    sections = expensive_sections(dvc_yaml)
    return [o for o in point.overrides if _reads(o.split("=", 1)[0], sections)]
