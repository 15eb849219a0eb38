"""Where one re-training method's results live under the metrics folder: the retrain stage
writes them here and the report reads them from here.

    <root>/methods/<key>.json          flat numeric metrics (DVC metrics)
    <root>/details/<key>.json          per-seed choices, grid, reliability bins
    <root>/plots/epochs/<key>.json     per-epoch curves (DVC plot data)
    <root>/plots/per_class/<key>.json  per-class results (DVC plot data)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lttools.atomic import write_json


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


def write_results(paths: ResultPaths, key: str, metrics: dict[str, float],
                  details: dict[str, Any]) -> None:
    """Each file atomically; the metrics last, so they exist only when everything does."""
    rest = dict(details)
    write_json(paths.epochs(key), rest.pop("epochs"))
    write_json(paths.per_class(key), rest.pop("per_class"))
    write_json(paths.details(key), rest)
    write_json(paths.metrics(key), metrics)
