"""The HDF5 feature store: frozen penultimate features of one backbone, written once.

Layout (schema version 2)::

    /                      attrs: schema_version, dataset, imb_ratio, max_per_class,
                           val_per_class, selection, data_seed, arch, feature_dim,
                           num_classes, checkpoint_sha256, views, dtype, torch_version
    /train/features        [1 + views, N, D]   view 0 clean, 1..views augmented (crop+flip)
    /train/labels          [N] int64
    /train/class_counts    [K] int64           the prior; the only place methods read it from
    /val/features          [1 or 2, N, D]      view 0 clean, view 1 horizontally flipped
    /val/labels
    /test/features         [1 or 2, N, D]      view 0 clean, view 1 horizontally flipped
    /test/labels
    /head/weight [K, D], /head/bias [K]        the stage-1 classifier, where re-training starts

Datasets are chunked by rows and written batch by batch, so memory stays bounded whatever
the dataset size. No timestamps are stored: the same inputs give a byte-identical file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import h5py
import numpy as np
import torch

from lttools.atomic import atomic_path
from lttools.errors import LTError

SCHEMA_VERSION = 2  # 2: validation has the flipped view too
SPLITS = ("train", "val", "test")
DTYPES = ("float32", "float16")
CHUNK_BYTES = 1 << 20
REQUIRED_ATTRS = ("schema_version", "dataset", "arch", "feature_dim", "num_classes", "views",
                  "dtype")


@dataclass
class StoreLayout:
    """What a store will hold: labels and number of views per split, the head (None: fitted
    on the clean training features once they are written), the prior."""
    labels: dict[str, np.ndarray]
    views: dict[str, int]  # split -> number of stored views (>= 1)
    head_weight: np.ndarray | None
    head_bias: np.ndarray | None
    class_counts: np.ndarray
    feature_dim: int


# A batch of features: (split, view, first row, array [rows, D]).
FeatureBatch = tuple[str, int, int, np.ndarray]
# Fits a head on the clean training features and labels: (W [K, D], b [K], how it was fitted).
HeadFitter = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, str]]


def write_store(path: str | Path, layout: StoreLayout, attrs: dict[str, Any],
                batches: Iterable[FeatureBatch], dtype: str = "float32",
                fit_head: HeadFitter | None = None) -> None:
    """Write a store atomically; `batches` must cover every row of every view exactly once.
    Without a head in `layout`, `fit_head` makes one from the written clean training view."""
    if dtype not in DTYPES:
        raise LTError(f"unknown features.dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    k, d = len(layout.class_counts), layout.feature_dim
    written = {s: np.zeros((layout.views[s], len(layout.labels[s])), dtype=bool) for s in SPLITS}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({**attrs, "schema_version": SCHEMA_VERSION, "feature_dim": d,
                            "num_classes": k, "dtype": dtype})
            rows_per_chunk = max(1, min(CHUNK_BYTES // (d * np.dtype(dtype).itemsize), 4096))
            for s in SPLITS:
                n = len(layout.labels[s])
                chunks = (1, min(n, rows_per_chunk), d) if n else None  # an empty split: none
                f.create_dataset(f"{s}/features", shape=(layout.views[s], n, d), dtype=dtype,
                                 chunks=chunks)
                f.create_dataset(f"{s}/labels", data=np.asarray(layout.labels[s], np.int64))
            f.create_dataset("train/class_counts", data=np.asarray(layout.class_counts, np.int64))
            if layout.head_weight is not None:
                _write_head(f, layout.head_weight, layout.head_bias)
            for split, view, start, arr in batches:
                f[f"{split}/features"][view, start:start + len(arr)] = arr.astype(dtype)
                written[split][view, start:start + len(arr)] = True
            missing = [s for s in SPLITS if not written[s].all()]
            if missing:
                raise LTError(f"internal error: feature rows of {missing} were never written")
            if layout.head_weight is None:
                w, b, note = fit_head(f["train/features"][0].astype(np.float32),
                                      np.asarray(layout.labels["train"], np.int64))
                _write_head(f, w, b)
                f.attrs["head_source"] = note


def _write_head(f: h5py.File, weight: np.ndarray, bias: np.ndarray) -> None:
    f.create_dataset("head/weight", data=np.asarray(weight, np.float32))
    f.create_dataset("head/bias", data=np.asarray(bias, np.float32))


@dataclass
class FeatureStore:
    """An opened, structurally validated store. Arrays are read on demand."""
    path: Path
    attrs: dict[str, Any]
    class_counts: np.ndarray
    labels: dict[str, np.ndarray]
    views: dict[str, int]
    head_weight: np.ndarray
    head_bias: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.attrs["num_classes"])

    @property
    def feature_dim(self) -> int:
        return int(self.attrs["feature_dim"])

    def read(self, split: str, view: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
        """One view of one split as a float32 tensor on `device`; refuses NaN / Inf."""
        if not 0 <= view < self.views[split]:
            raise LTError(f"{self.path}: split {split!r} has {self.views[split]} view(s), "
                          f"view {view} requested")
        try:
            with _open(self.path) as f:
                arr = f[f"{split}/features"][view]
        except (OSError, KeyError) as exc:
            raise LTError(f"{self.path}: reading {split} features (view {view}) failed ({exc}); "
                          "the file was damaged or replaced after it was opened. Re-run "
                          "`dvc repro extract_features`.") from exc
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=torch.float32)
        if not torch.isfinite(t).all():
            raise LTError(f"{self.path}: {split} features (view {view}) contain NaN or Inf; the "
                          "backbone diverged or the file is damaged. Re-run stage 1 / extraction.")
        return t


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise LTError(f"{path} cannot be opened as HDF5 ({exc}); the file is truncated or "
                      "corrupt. Delete it and re-run `dvc repro extract_features`.") from exc


def open_store(path: str | Path, expect: dict[str, Any] | None = None,
               head_dim: int | None = None) -> FeatureStore:
    """Open and validate: schema version, shapes, label range, counts against labels,
    feature dimension against `head_dim`, and attributes against `expect` (e.g. the dataset
    the params name)."""
    path = Path(path)
    if not path.exists():
        raise LTError(f"feature store {path} does not exist; run `dvc repro extract_features`")
    with _open(path) as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        missing = [a for a in REQUIRED_ATTRS if a not in attrs]
        if missing:
            raise LTError(f"{path} is not an lttools feature store (missing attributes "
                          f"{', '.join(missing)})")
        if attrs["schema_version"] != SCHEMA_VERSION:
            raise LTError(f"{path} has schema version {attrs['schema_version']}; this lttools "
                          f"reads version {SCHEMA_VERSION}. Re-run `dvc repro extract_features`.")
        try:
            labels = {s: f[f"{s}/labels"][()] for s in SPLITS}
            shapes = {s: f[f"{s}/features"].shape for s in SPLITS}
            counts = f["train/class_counts"][()]
            w, b = f["head/weight"][()], f["head/bias"][()]
        except (KeyError, OSError) as exc:
            raise LTError(f"{path} is incomplete or corrupt ({exc}); re-run "
                          "`dvc repro extract_features`") from exc
    k, d = int(attrs["num_classes"]), int(attrs["feature_dim"])
    for s in SPLITS:
        if len(shapes[s]) != 3 or shapes[s][1] != len(labels[s]) or shapes[s][2] != d:
            raise LTError(f"{path}: {s}/features has shape {shapes[s]}, expected "
                          f"[views, {len(labels[s])}, {d}]")
        if len(labels[s]) and (labels[s].min() < 0 or labels[s].max() >= k):
            raise LTError(f"{path}: {s} labels lie in [{labels[s].min()}, {labels[s].max()}], "
                          f"outside [0, {k - 1}]")
    if not np.array_equal(np.bincount(labels["train"], minlength=k), counts):
        raise LTError(f"{path}: train/class_counts do not match the training labels")
    if w.shape != (k, d) or b.shape != (k,):
        raise LTError(f"{path}: head has shape {w.shape}/{b.shape}, expected ({k}, {d})/({k},)")
    if head_dim is not None and head_dim != d:
        raise LTError(f"{path}: features are {d}-d but the head expects {head_dim}-d inputs; "
                      "the store comes from another backbone")
    for key, want in (expect or {}).items():
        if key in attrs and attrs[key] != want:
            raise LTError(f"{path} was built with {key} = {attrs[key]!r} but the params say "
                          f"{want!r}; re-run `dvc repro extract_features`")
    return FeatureStore(path, attrs, counts, labels, {s: shapes[s][0] for s in SPLITS}, w, b)
