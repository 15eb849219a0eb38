"""Features from elsewhere in and out of the feature store.

`import_arrays` builds a store from arrays: one `.npz`, one `.pt` (a dict, read with
`torch.load(weights_only=True)`) or a folder of `.npy` files (`<key>.npy`), with the keys

    train_features, train_labels, test_features, test_labels     required
    val_features, val_labels                                     optional (no validation
                                                                 split: nothing is selected)
    head_weight [K, D], head_bias [K]                            optional (else fitted)
    class_names [K]                                              optional

Features are [N, D] (one view) or [V, N, D] (train: clean + augmented views; val / test:
clean + flipped). Shapes, label ranges and finiteness are checked, each error naming the key.
A folder of `.npy` files is read memory-mapped; an `.npz` or `.pt` is loaded whole.
`export_store` writes a store back to such an `.npz`, byte-identical for equal contents.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lttools.errors import LTError
from lttools.features.store import SPLITS, StoreLayout, open_store, write_store
from lttools.features.head_fit import HeadFit, fit_head
from lttools.provenance import sha256_file

REQUIRED = ("train_features", "train_labels", "test_features", "test_labels")
OPTIONAL = ("val_features", "val_labels", "head_weight", "head_bias", "class_names")
CHECK_ROWS = 65536  # finiteness is checked in slices of this many rows (bounded memory)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry timestamps: equal contents give equal bytes


@dataclass(frozen=True)
class ImportConfig:
    """The `import:` section of an imported-features pipeline's params.yaml."""
    source: str
    dataset: str = "imported"
    dtype: str = "float32"
    head_epochs: int = 30
    head_lr: float = 0.1
    head_weight_decay: float = 5e-4
    head_batch_size: int = 256
    seed: int = 0

    def validate(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise LTError(f"import.dtype = {self.dtype!r} is not valid; choose float32 or float16")
        self.head_fit().validate("import")

    def head_fit(self) -> HeadFit:
        return HeadFit(self.head_epochs, self.head_lr, self.head_weight_decay,
                       self.head_batch_size, self.seed)


def read_arrays(source: str | Path) -> tuple[dict[str, Any], str]:
    """The arrays of `source` by key, and the sha256 of what was read."""
    source = Path(source)
    if not source.exists():
        raise LTError(f"{source} does not exist; give an .npz, a .pt or a folder of .npy files")
    valid = (*REQUIRED, *OPTIONAL)
    try:
        if source.is_dir():
            files = sorted(source.glob("*.npy"))
            arrays = {f.stem: np.load(f, allow_pickle=False, mmap_mode="r") for f in files}
            digest = sha256_file_list(files)
        elif source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            digest = sha256_file(source)
        elif source.suffix in (".pt", ".pth"):
            obj = torch.load(source, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise LTError(f"{source} holds a {type(obj).__name__}; expected a dict of arrays")
            arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                      for k, v in obj.items()}
            digest = sha256_file(source)
        else:
            raise LTError(f"{source}: unknown format; give an .npz, a .pt or a folder of .npy files")
    except LTError:
        raise
    except Exception as exc:  # noqa: BLE001 — a damaged or foreign file
        raise LTError(f"{source} cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from exc
    unknown = sorted(set(arrays) - set(valid))
    if unknown:
        raise LTError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise LTError(f"{source} lacks {', '.join(missing)} (required: {', '.join(REQUIRED)})")
    return arrays, digest


def sha256_file_list(files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def _views(arrays: dict[str, Any], split: str, source: Path) -> np.ndarray | None:
    x = arrays.get(f"{split}_features")
    if x is None:
        return None
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
        raise LTError(f"{source}: {split}_features must be floats shaped [N, D] or [views, N, D]; "
                      f"found {x.dtype} {tuple(x.shape)}")
    for v in range(x.shape[0]):
        for i in range(0, x.shape[1], CHECK_ROWS):
            if not np.isfinite(x[v, i:i + CHECK_ROWS]).all():
                raise LTError(f"{source}: {split}_features (view {v}) hold NaN or Inf")
    return x


def _labels(arrays: dict[str, Any], split: str, n: int, source: Path) -> np.ndarray:
    y = np.asarray(arrays[f"{split}_labels"])
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise LTError(f"{source}: {split}_labels must be integers shaped [N]; found {y.dtype} "
                      f"{tuple(y.shape)}")
    if len(y) != n:
        raise LTError(f"{source}: {split}_labels has {len(y)} entries but {split}_features has "
                      f"{n} rows")
    return y.astype(np.int64)


def validated(arrays: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """Features as [V, N, D], labels, K, head and class names, checked against each other."""
    source = Path(source)
    if ("val_features" in arrays) != ("val_labels" in arrays):
        raise LTError(f"{source}: val_features and val_labels go together")
    if ("head_weight" in arrays) != ("head_bias" in arrays):
        raise LTError(f"{source}: head_weight and head_bias go together")
    feats = {s: _views(arrays, s, source) for s in SPLITS}
    d = feats["train"].shape[2]
    if feats["val"] is None:  # no validation split
        feats["val"] = np.zeros((1, 0, d), np.float32)
        arrays = {**arrays, "val_labels": np.zeros(0, np.int64)}
    labels = {s: _labels(arrays, s, feats[s].shape[1], source) for s in SPLITS}
    for s in SPLITS:
        if feats[s].shape[2] != d:
            raise LTError(f"{source}: {s}_features are {feats[s].shape[2]}-d, train_features "
                          f"{d}-d")
    names = arrays.get("class_names")
    # the class count: from the names, else the head, else the training labels
    k = (len(names) if names is not None else arrays["head_weight"].shape[0]
         if "head_weight" in arrays else int(labels["train"].max(initial=-1)) + 1)
    for s in SPLITS:
        if len(labels[s]) and (labels[s].min() < 0 or labels[s].max() >= k):
            raise LTError(f"{source}: {s}_labels lie in [{labels[s].min()}, {labels[s].max()}], "
                          f"outside [0, {k - 1}] ({k} classes)")
    head = None
    if "head_weight" in arrays:
        w, b = np.asarray(arrays["head_weight"]), np.asarray(arrays["head_bias"])
        if w.shape != (k, d) or b.shape != (k,):
            raise LTError(f"{source}: head_weight / head_bias have shapes {w.shape} / {b.shape}, "
                          f"expected ({k}, {d}) / ({k},)")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise LTError(f"{source}: the head holds NaN or Inf")
        head = (w.astype(np.float32), b.astype(np.float32))
    return {"features": feats, "labels": labels, "k": k, "d": d, "head": head,
            "class_names": None if names is None else [str(n) for n in names]}


def import_arrays(cfg: ImportConfig, out: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Build the store at `out` (atomically) from `cfg.source`; returns its attributes."""
    cfg.validate()
    arrays, digest = read_arrays(cfg.source)
    v = validated(arrays, cfg.source)
    counts = np.bincount(v["labels"]["train"], minlength=v["k"])
    present = counts[counts > 0]
    head = v["head"]
    layout = StoreLayout(labels=v["labels"], views={s: v["features"][s].shape[0] for s in SPLITS},
                         head_weight=None if head is None else head[0],
                         head_bias=None if head is None else head[1], class_counts=counts,
                         feature_dim=v["d"])
    attrs = {"dataset": cfg.dataset, "arch": "imported", "checkpoint_sha256": "",
             "source_sha256": digest, "views": int(v["features"]["train"].shape[0] - 1),
             "imb_ratio": float(present.max() / present.min()),
             "max_per_class": int(counts.max()), "head_source": "imported",
             "torch_version": torch.__version__.split("+")[0]}
    if v["class_names"] is not None:
        attrs["class_names"] = json.dumps(v["class_names"])

    def batches():
        for s in SPLITS:
            for view in range(v["features"][s].shape[0]):
                yield s, view, 0, v["features"][s][view]

    def fit(features, labels):
        return fit_head(torch.from_numpy(features), torch.from_numpy(labels), v["k"],
                        cfg.head_fit(), device)

    write_store(out, layout, attrs, batches(), cfg.dtype, fit_head=None if head else fit)
    return attrs


def export_store(store_path: str | Path, out: str | Path) -> None:
    """Every view, label and the head of a store as an .npz that `import_arrays` reads back
    (features as float32). Written view by view (memory bounded by one view) with fixed zip
    timestamps: equal contents give equal bytes."""
    from lttools.atomic import atomic_path

    store = open_store(store_path)
    entries = {f"{s}_labels": store.labels[s] for s in SPLITS}
    entries.update(head_weight=store.head_weight, head_bias=store.head_bias)
    if "class_names" in store.attrs:
        entries["class_names"] = np.array(json.loads(store.attrs["class_names"]))
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED,
                                                  allowZip64=True) as z:
        def put(name: str, array: np.ndarray) -> None:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME), buf.getvalue())

        for s in SPLITS:
            if not len(store.labels[s]) and s == "val":  # no validation split
                entries.pop("val_labels")
                continue
            shape = (store.views[s], len(store.labels[s]), store.feature_dim)
            info = zipfile.ZipInfo(f"{s}_features.npy", date_time=ZIP_TIME)
            with z.open(info, "w", force_zip64=True) as f:  # one view at a time
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                        "fortran_order": False, "shape": shape})
                for view in range(shape[0]):
                    f.write(store.read(s, view).numpy().astype("<f4").tobytes())
        for name, array in entries.items():
            put(name, array)
