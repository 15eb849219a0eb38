"""One method's stage: read the feature store, train the plan's heads, select, summarise."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lttools.data.longtail import FEW_BELOW, MANY_ABOVE
from lttools.device import resolve_device
from lttools.errors import LTError
from lttools.features.store import FeatureStore, open_store
from lttools.predictions import Predictions, identify_test_set, pairing_problem
from lttools.provenance import check_backbone, store_provenance
from lttools.retrain.plan import make_plan
from lttools.retrain.summary import replicate_predictions, summarize_replicates
from lttools.retrain.records import FeatureData
from lttools.retrain.trainer import train_replicates
from lttools.stats import STATISTICS, Settings, bootstrap


def load_feature_data(store: FeatureStore, views: int, flip_test: bool, device: torch.device,
                      dtype: str = "float32") -> FeatureData:
    """The views stage 2 uses: clean + `views` augmented training views (as many as stored;
    the trainer refuses too few); validation and test clean (+ flipped): both are scored the
    same way, so that selection and reporting agree."""
    train_views = min(store.views["train"], 1 + views)
    eval_views = {s: store.views[s] if flip_test else 1 for s in ("val", "test")}
    held = getattr(torch, dtype)  # features resident in this precision; heads compute in fp32

    def views_of(split: str, n: int) -> torch.Tensor:
        out = None
        for v in range(n):  # one view at a time: no second full copy in float32
            x = store.read(split, v, device).to(held)
            if out is None:
                out = torch.empty((n, *x.shape), dtype=held, device=device)
            out[v] = x
        return out

    return FeatureData(
        train=views_of("train", train_views),
        train_labels=torch.from_numpy(store.labels["train"]).to(device),
        val=views_of("val", eval_views["val"]),
        val_labels=torch.from_numpy(store.labels["val"]).to(device),
        test=views_of("test", eval_views["test"]),
        test_labels=torch.from_numpy(store.labels["test"]).to(device),
        class_counts=store.class_counts,
        head_weight=torch.from_numpy(store.head_weight),
        head_bias=torch.from_numpy(store.head_bias),
        group_thresholds=_thresholds(store))


def add_intervals(metrics: dict[str, float], predictions: Predictions,
                  settings: Settings) -> None:
    """`test_<statistic>_ci_low` / `_ci_high` of the selected results (lttools/stats.py), so
    that `dvc metrics diff` and `dvc exp show` carry them; with several backbone replicates the
    interval holds the backbones too."""
    boot = bootstrap({"selected": predictions.runs("selected")}, predictions.labels,
                     predictions.train_counts, predictions.thresholds, settings)
    for g, statistic in enumerate(STATISTICS):
        if boot.available[g]:
            low, high = boot.interval("selected", statistic)
            metrics[f"test_{statistic}_ci_low"] = low
            metrics[f"test_{statistic}_ci_high"] = high
    metrics["ci_level"] = settings.level


@dataclass(frozen=True)
class Replicate:
    """One backbone replicate's feature store, and the backbone it must come from (None:
    imported features, nothing to check against)."""
    seed: int
    features: Path
    backbone: Path | None = None


def run_method(key: str, entry: dict[str, Any] | None, shared: dict[str, Any],
               replicates: list[Replicate], expect: dict[str, Any] | None = None,
               quiet: bool = False, uncertainty: dict[str, Any] | None = None,
               ) -> tuple[dict[str, float], dict[str, Any], Predictions]:
    """Train and summarise one `methods:` entry on every replicate's store, after checking each
    store against the params (`expect`) and the backbone it must come from. The details record
    where the numbers come from (provenance); the predictions are each run's per-image test
    results, from which the metrics' intervals come (`uncertainty`)."""
    settings = Settings.from_params(uncertainty)
    plan = make_plan(key, entry, shared)  # validate params before touching any data
    stores = []
    for r in replicates:  # every store checked before any training
        store = open_store(r.features, expect=expect)
        if r.backbone is not None:
            check_backbone(store.path, store.attrs, r.backbone)
        stores.append(store)
    labels = stores[0].labels["test"]
    if not len(labels):
        raise LTError(f"{stores[0].path} has no test images; the test split is what is reported")
    test_set = identify_test_set(stores[0].attrs, labels)
    for store in stores[1:]:
        why = pairing_problem(test_set, identify_test_set(store.attrs, store.labels["test"]))
        if why:
            raise LTError(f"{store.path} and {stores[0].path} were not extracted from the same "
                          f"test images ({why}); re-run `dvc repro` so that every backbone "
                          "replicate reads the same prepared data")
    device = resolve_device(shared.get("device", "auto"))
    views = int(shared.get("views", 0))
    data = [load_feature_data(store, views, bool(shared.get("flip_test", True)), device,
                              shared.get("feature_dtype", "float32")) for store in stores]
    histories = train_replicates(plan, data, views=views, device=device, quiet=quiet,
                                 memory_gb=shared.get("memory_gb"))
    seeds = [r.seed for r in replicates]
    metrics, details = summarize_replicates(histories, seeds)
    predictions = replicate_predictions(histories, labels, _thresholds(stores[0]), test_set, seeds)
    add_intervals(metrics, predictions, settings)
    details["provenance"] = store_provenance(stores[0].path, stores[0].attrs)
    if len(stores) > 1:
        details["replicate_provenance"] = [
            {"replicate": seed, **store_provenance(store.path, store.attrs)}
            for seed, store in zip(seeds, stores)]
    names = json.loads(stores[0].attrs["class_names"]) if "class_names" in stores[0].attrs \
        else None
    if names:
        for row in details["per_class"]:
            row["name"] = names[row["class"]]
    return metrics, details, predictions


def _thresholds(store: FeatureStore) -> tuple[int, int]:
    return (int(store.attrs.get("many_above", MANY_ABOVE)),
            int(store.attrs.get("few_below", FEW_BELOW)))
