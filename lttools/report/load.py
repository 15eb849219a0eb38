"""Read every method's outputs, and say plainly what cannot be shown and why."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lttools.errors import LTError
from lttools.predictions import Predictions, load_predictions
from lttools.results import METRICS_SCHEMA, ResultPaths


@dataclass
class MethodResult:
    key: str
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # set when the method cannot be ranked
    predictions: Predictions | None = None  # per-seed test predictions, for intervals
    predictions_problem: str | None = None  # why there are none

    def get(self, name: str) -> float | None:
        v = self.metrics.get(name)
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is unreadable ({exc})") from exc


def load_method(key: str, paths: ResultPaths) -> MethodResult:
    r = MethodResult(key)
    try:
        metrics = _read(paths.metrics(key))
        r.details = _read(paths.details(key)) or {}
        r.epochs = _read(paths.epochs(key)) or []
        r.per_class = _read(paths.per_class(key)) or []
    except ValueError as exc:
        r.problem = str(exc)
        return r
    if metrics is None:
        r.problem = f"no results yet: run `dvc repro retrain@{key}`"
    elif metrics.get("metrics_schema") != METRICS_SCHEMA:
        r.problem = (f"results written by another lttools version (schema "
                     f"{metrics.get('metrics_schema', 'none')}, expected {METRICS_SCHEMA}); "
                     f"re-run `dvc repro -f retrain@{key}`")
    elif not metrics.get("num_seeds") or "test_bacc_mean" not in metrics:
        r.problem = "no finished seeds"
    else:
        r.metrics = metrics
        _load_predictions(r, paths.predictions(key))
    return r


def _load_predictions(r: MethodResult, path: Path) -> None:
    if not path.exists():
        r.predictions_problem = (f"no {path}: results from before predictions were kept; "
                                 f"re-run `dvc repro -f retrain@{r.key}`")
        return
    try:
        r.predictions = load_predictions(path)
    except LTError as exc:
        r.predictions_problem = str(exc)


def load_results(keys: list[str], root: str | Path = "metrics") -> list[MethodResult]:
    paths = ResultPaths(Path(root))
    return [load_method(k, paths) for k in keys]


def ranked(results: list[MethodResult]) -> list[MethodResult]:
    """Methods with results, best selected test balanced accuracy first."""
    ok = [r for r in results if r.problem is None]
    return sorted(ok, key=lambda r: -(r.get("test_bacc_mean") or -math.inf))
