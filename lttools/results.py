"""Where one re-training method's results live under the metrics folder: the retrain stage
writes them here and the report reads them from here.

    <root>/methods/<key>.json          flat numeric metrics (DVC metrics)
    <root>/details/<key>.json          per-seed choices, grid, reliability bins
    <root>/plots/epochs/<key>.json     per-epoch curves (DVC plot data)
    <root>/plots/per_class/<key>.json  per-class results (DVC plot data)
    <root>/predictions/<key>.npz       per-seed test predictions (DVC-cached, not in Git)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lttools.atomic import write_set
from lttools.predictions import Predictions, predictions_bytes

METRICS_SCHEMA = 1  # bump when metric names or meanings change; the report checks it


@dataclass(frozen=True)
class ResultPaths:
    root: Path = Path("metrics")

    def metrics(self, key: str) -> Path:
        return self.root / "methods" / f"{key}.json"

    def details(self, key: str) -> Path:
        return self.root / "details" / f"{key}.json"

    def epochs(self, key: str) -> Path:
        return self.root / "plots" / "epochs" / f"{key}.json"

    def per_class(self, key: str) -> Path:
        return self.root / "plots" / "per_class" / f"{key}.json"

    def predictions(self, key: str) -> Path:
        return self.root / "predictions" / f"{key}.npz"


def write_results(paths: ResultPaths, key: str, metrics: dict[str, float],
                  details: dict[str, Any], predictions: Predictions | None = None) -> None:
    """The files as one set: an interrupted write leaves the old set or the new, never new
    plots or predictions beside old metrics."""
    rest = dict(details)
    files = {paths.epochs(key): rest.pop("epochs"), paths.per_class(key): rest.pop("per_class"),
             paths.details(key): rest, paths.metrics(key): metrics}
    if predictions is not None:
        files[paths.predictions(key)] = predictions_bytes(predictions)
    write_set(files)
