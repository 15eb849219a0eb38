"""From a `methods.<key>` entry of params.yaml to a plan: the method, its grid of
hyper-parameter points, the shared schedule and the seeds. All validation happens here."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from lttools.config import check_type
from lttools.errors import LTError, check_range
from lttools.retrain.registry import get_method
from lttools.retrain.spec import AUTO, SCHEDULE_PARAMS, TRAIN_PARAMS, Method

# Settings in the `retrain:` section shared by every method's stage; any optimisation
# hyper-parameter given there too (lr, epochs, ...) is the default under a method's own.
SHARED_KEYS = ("seeds", "views", "flip_test", "device", "feature_dtype", "memory_gb")


@dataclass
class Plan:
    key: str
    method: Method
    grid: list[dict[str, Any]]  # one dict of per-head hyper-parameters per grid point
    grid_keys: list[str]  # the hyper-parameters that vary over the grid
    options: dict[str, Any]  # categorical settings shared by every head
    epochs: int
    batch_size: int
    seeds: list[int]

    @property
    def num_heads(self) -> int:
        return len(self.grid) * len(self.seeds)


SHARED_TYPES = {"seeds": int | list[int], "views": int, "flip_test": bool, "device": str,
                "feature_dtype": str, "memory_gb": float | None}
FEATURE_DTYPES = ("float32", "bfloat16", "float16")


def check_shared(shared: dict[str, Any]) -> None:
    """The `retrain:` section: known keys only, each of its type and range, also the
    optimisation defaults that some method overrides with its own."""
    valid = {*SHARED_KEYS, *TRAIN_PARAMS, *SCHEDULE_PARAMS}
    unknown = sorted(set(shared) - valid)
    if unknown:
        raise LTError(f"retrain: unknown key(s) {', '.join(unknown)}; valid keys: "
                      f"{', '.join(sorted(valid))}")
    for name, value in shared.items():
        if name in SHARED_TYPES:
            check_type(f"retrain.{name}", value, SHARED_TYPES[name])
        else:
            spec = {**TRAIN_PARAMS, **SCHEDULE_PARAMS}[name]
            for v in value if isinstance(value, list) else [value]:
                spec.check(f"retrain.{name}", v)
    check_range("retrain.views", shared.get("views", 0), low=0)
    if shared.get("feature_dtype", "float32") not in FEATURE_DTYPES:
        raise LTError(f"retrain.feature_dtype = {shared['feature_dtype']!r} is not valid; choose "
                      f"one of {', '.join(FEATURE_DTYPES)}")
    if shared.get("memory_gb") is not None:
        check_range("retrain.memory_gb", shared["memory_gb"], low=0, low_inclusive=False)


def make_plan(key: str, entry: dict[str, Any] | None, shared: dict[str, Any]) -> Plan:
    check_shared(shared)
    entry = dict(entry or {})
    method = get_method(entry.pop("method", key))
    specs = method.all_params()
    unknown = sorted(set(entry) - set(specs))
    if unknown:
        raise LTError(f"methods.{key}: unknown parameter(s) {', '.join(unknown)} for method "
                      f"{method.name!r}; valid: {', '.join(sorted(specs))}")
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        method_specific = name in method.params or name in method.train_defaults
        default = spec.default if method_specific else shared.get(name, spec.default)
        values[name] = entry.get(name, default)
    seeds = shared.get("seeds", [0])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not seeds:
        raise LTError("retrain.seeds is empty; give at least one seed, e.g. [0, 1, 2]")
    grid_axes: dict[str, list[Any]] = {}
    options: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs[name]
        choices = value if isinstance(value, list) else [value]
        if not choices:
            raise LTError(f"methods.{key}.{name} is an empty grid; give one value or a "
                          "non-empty list")
        for v in choices:
            spec.check(f"methods.{key}.{name}", v)
        if spec.choices is not None or name in SCHEDULE_PARAMS:
            if len(choices) > 1:
                raise LTError(f"methods.{key}.{name} cannot be a grid (one value is shared by "
                              f"all heads of the stage); got {choices}")
            options[name] = choices[0]
        else:
            grid_axes[name] = [v if v == AUTO else float(v) for v in choices]
    names = list(grid_axes)
    grid = [dict(zip(names, combo)) for combo in itertools.product(*grid_axes.values())]
    return Plan(key, method, grid, [n for n in names if len(grid_axes[n]) > 1],
                {k: v for k, v in options.items() if k not in SCHEDULE_PARAMS},
                int(options["epochs"]), int(options["batch_size"]), [int(s) for s in seeds])


def resolve_auto(plan: Plan, counts) -> Plan:
    """The plan with every "auto" hyper-parameter replaced by the value its method's reference
    configures for this training set's class counts."""
    specs = plan.method.all_params()
    grid = []
    for point in plan.grid:
        resolved = {}
        for name, value in point.items():
            if value == AUTO:
                value = float(specs[name].auto(counts))
            resolved[name] = value
        grid.append(resolved)
    return dataclasses.replace(plan, grid=grid)


def head_seeds(plan: Plan) -> list[int]:
    return [s for _ in plan.grid for s in plan.seeds]


def hyper_tensors(plan: Plan, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-head hyper-parameters, [H] each."""
    return {k: torch.tensor([g[k] for g in plan.grid for _ in plan.seeds], dtype=torch.float32,
                            device=device) for k in plan.grid[0]}

