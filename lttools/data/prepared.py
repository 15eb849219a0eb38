"""The prepared dataset: long-tailed train, balanced validation and test images in one HDF5
file, the single source that stage 1 and feature extraction both read."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lttools.atomic import atomic_path
from lttools.data.longtail import split_long_tailed
from lttools.data.sources import load_raw
from lttools.errors import LTError

SPLITS = ("train", "val", "test")


@dataclass
class Splits:
    dataset: str
    num_classes: int
    images: dict[str, np.ndarray]  # split -> uint8 [N, C, H, W]
    labels: dict[str, np.ndarray]  # split -> int64 [N]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where the raw files were read from (reported, not stored)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels["train"], minlength=self.num_classes)


@dataclass(frozen=True)
class DataConfig:
    """The `data:` section of params.yaml."""
    dataset: str
    imb_ratio: float
    max_per_class: int
    root: str | None = None
    download: bool = False
    val_per_class: int = 0
    selection: str = "first"
    seed: int = 0


def prepare(cfg: DataConfig) -> Splits:
    raw = load_raw(cfg.dataset, cfg.root, cfg.download)
    train_ix, val_ix = split_long_tailed(raw.train_y, raw.num_classes, cfg.imb_ratio,
                                         cfg.max_per_class, cfg.val_per_class, cfg.selection,
                                         cfg.seed)
    meta = {"dataset": cfg.dataset, "imb_ratio": float(cfg.imb_ratio),
            "max_per_class": int(cfg.max_per_class), "val_per_class": int(cfg.val_per_class),
            "selection": cfg.selection, "seed": int(cfg.seed),
            # which copy of the data this is (the folder it came from is printed, not stored:
            # the same files elsewhere give the same prepared dataset)
            "raw_sha256": json.dumps(raw.sha256, sort_keys=True)}
    splits = Splits(
        cfg.dataset, raw.num_classes,
        images={"train": raw.train_x[train_ix], "val": raw.train_x[val_ix], "test": raw.test_x},
        labels={"train": raw.train_y[train_ix], "val": raw.train_y[val_ix], "test": raw.test_y},
        meta=meta)
    splits.source = raw.source
    return splits


def write_splits(path: str | Path, splits: Splits) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in splits.meta.items():
            f.attrs[k] = v
        f.attrs["num_classes"] = splits.num_classes
        for s in SPLITS:
            f.create_dataset(f"{s}/images", data=splits.images[s])
            f.create_dataset(f"{s}/labels", data=splits.labels[s])


def read_splits(path: str | Path) -> Splits:
    path = Path(path)
    if not path.exists():
        raise LTError(f"prepared dataset {path} does not exist; run `dvc repro prepare_data`")
    try:
        with h5py.File(path, "r") as f:
            meta = dict(f.attrs)
            images = {s: f[f"{s}/images"][()] for s in SPLITS}
            labels = {s: f[f"{s}/labels"][()] for s in SPLITS}
    except (OSError, KeyError) as exc:
        raise LTError(f"{path} is not a valid prepared dataset ({exc}); delete it and run "
                      "`dvc repro prepare_data`") from exc
    k = int(meta.pop("num_classes"))
    meta = {m: (v.item() if hasattr(v, "item") else v) for m, v in meta.items()}
    return Splits(str(meta["dataset"]), k, images, labels, meta)
