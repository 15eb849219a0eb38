"""Where a method's numbers come from: the backbone and feature store they were trained on
(by hash), the data subset, and the software versions; and the check that a feature store
belongs to the backbone and the data the params name."""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lttools
from lttools.errors import LTError

SUBSET_ATTRS = ("dataset", "longtail", "imb_ratio", "max_per_class", "val_per_class",
                "selection", "data_seed")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    return {"lttools": lttools.__version__, "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__, "python": platform.python_version()}


def expected_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """The store attributes the params decide: from `data:` (features extracted by this
    pipeline) or from `import:` (features imported from elsewhere: their name)."""
    if isinstance(params.get("data"), dict):
        return expected_from_data_params(params["data"])
    if isinstance(params.get("import"), dict) and "dataset" in params["import"]:
        return {"dataset": params["import"]["dataset"]}
    return {}


def expected_from_data_params(data: dict[str, Any]) -> dict[str, Any]:
    """The store attributes that the `data:` params decide (names as the store records them)."""
    longtail = data.get("longtail", "exponential")
    want = {"dataset": data.get("dataset"), "longtail": longtail,
            "val_per_class": data.get("val_per_class"), "selection": data.get("selection"),
            "data_seed": data.get("seed")}
    if longtail == "exponential":  # with `given` they are measured, not chosen
        want.update(imb_ratio=data.get("imb_ratio"), max_per_class=data.get("max_per_class"))
    return {k: (float(v) if k == "imb_ratio" else v) for k, v in want.items() if v is not None}


def check_backbone(store_path: Path, attrs: dict[str, Any], backbone: Path) -> str:
    """The backbone's sha256, after checking that the store was extracted from it."""
    if not backbone.exists():
        raise LTError(f"backbone {backbone} does not exist, so {store_path} cannot be checked "
                      "against it; run `dvc repro train_backbone` (or pass --backbone none "
                      "for imported features)")
    digest = sha256_file(backbone)
    recorded = attrs.get("checkpoint_sha256")
    if recorded != digest:
        raise LTError(f"{store_path} was extracted from another backbone than {backbone} "
                      f"(checkpoint sha256 {str(recorded)[:12]}… in the store vs {digest[:12]}… "
                      "now); re-run `dvc repro extract_features`")
    return digest


def store_provenance(store_path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "features_sha256": sha256_file(store_path),
        "backbone": {"arch": attrs.get("arch"), "checkpoint_sha256": attrs.get("checkpoint_sha256"),
                     "feature_dim": attrs.get("feature_dim"),
                     "head": attrs.get("head_source", "stage-1 head")},
        "data": {k: attrs.get(k) for k in (*SUBSET_ATTRS, "validation", "raw_sha256")
                 if k in attrs},
        "extracted_with_torch": attrs.get("torch_version"),
        "versions": versions(),
    }
