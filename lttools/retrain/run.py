"""One method's stage: read the feature store, train the plan's heads, select, summarise."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lttools.device import resolve_device
from lttools.features import FeatureStore, open_store
from lttools.provenance import check_backbone, store_provenance
from lttools.retrain.plan import make_plan
from lttools.retrain.summary import summarize
from lttools.retrain.trainer import FeatureData, train_heads


def load_feature_data(store: FeatureStore, views: int, flip_test: bool,
                      device: torch.device) -> FeatureData:
    """The views stage 2 uses: clean + `views` augmented training views (as many as stored;
    the trainer refuses too few); validation and test clean (+ flipped): both are scored the
    same way, so that selection and reporting agree."""
    train_views = min(store.views["train"], 1 + views)
    eval_views = {s: store.views[s] if flip_test else 1 for s in ("val", "test")}
    return FeatureData(
        train=torch.stack([store.read("train", v, device) for v in range(train_views)]),
        train_labels=torch.from_numpy(store.labels["train"]).to(device),
        val=torch.stack([store.read("val", v, device) for v in range(eval_views["val"])]),
        val_labels=torch.from_numpy(store.labels["val"]).to(device),
        test=torch.stack([store.read("test", v, device) for v in range(eval_views["test"])]),
        test_labels=torch.from_numpy(store.labels["test"]).to(device),
        class_counts=store.class_counts,
        head_weight=torch.from_numpy(store.head_weight),
        head_bias=torch.from_numpy(store.head_bias))


def run_method(key: str, entry: dict[str, Any] | None, shared: dict[str, Any],
               features: str | Path, expect: dict[str, Any] | None = None,
               backbone: str | Path | None = None,
               quiet: bool = False) -> tuple[dict[str, float], dict[str, Any]]:
    """Train and summarise one `methods:` entry on the store at `features`, after checking
    the store against the params (`expect`) and, when given, the backbone it must come from.
    The details record where the numbers come from (provenance)."""
    plan = make_plan(key, entry, shared)  # validate params before touching any data
    store = open_store(features, expect=expect)
    if backbone is not None:
        check_backbone(store.path, store.attrs, Path(backbone))
    device = resolve_device(shared.get("device", "auto"))
    views = int(shared.get("views", 0))
    data = load_feature_data(store, views, bool(shared.get("flip_test", True)), device)
    history = train_heads(plan, data, views=views, device=device, quiet=quiet)
    metrics, details = summarize(history)
    details["provenance"] = store_provenance(store.path, store.attrs)
    return metrics, details
