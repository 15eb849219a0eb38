"""From the `data:` params to the prepared dataset: which images are training, validation and
test, drawn as the long-tailed protocol says."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lttools.data.images import (ImageSplit, check_disjoint, check_files, check_labels,
                                 check_sizes, class_folders, list_files, preset, read_list,
                                 scan_folder)
from lttools.data.longtail import carve_validation, split_long_tailed
from lttools.data.prepared import SPLITS, AnySplits, DataConfig, FileSplits, Splits
from lttools.data.sources import LOADERS, load_raw
from lttools.errors import LTError, unknown_name


def select(labels: np.ndarray, num_classes: int, cfg: DataConfig,
           val_given: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into the training source: the exponential profile (or the split
    as it is), after the last val_per_class images of each class are set aside for validation
    (none when the source has its own validation split)."""
    v = 0 if val_given else cfg.val_per_class
    if cfg.longtail == "exponential":
        return split_long_tailed(labels, num_classes, cfg.imb_ratio, cfg.max_per_class, v,
                                 cfg.selection, cfg.seed)
    return carve_validation(labels, num_classes, v)


def base_meta(cfg: DataConfig, train_labels: np.ndarray, num_classes: int) -> dict:
    counts = np.bincount(train_labels, minlength=num_classes)
    present = counts[counts > 0]
    given = cfg.longtail == "given"
    return {"dataset": cfg.dataset, "longtail": cfg.longtail,
            "imb_ratio": float(present.max() / present.min()) if given else float(cfg.imb_ratio),
            "max_per_class": int(counts.max()) if given else int(cfg.max_per_class),
            "val_per_class": int(cfg.val_per_class), "selection": cfg.selection,
            "seed": int(cfg.seed), "many_above": int(cfg.many_above),
            "few_below": int(cfg.few_below)}


def prepare(cfg: DataConfig, quiet: bool = True) -> AnySplits:
    cfg.validate()
    if cfg.files:
        return prepare_files(cfg, quiet)
    if cfg.dataset not in LOADERS:
        raise unknown_name("dataset", cfg.dataset, [*LOADERS, "image_folder", "image_list"])
    raw = load_raw(cfg.dataset, cfg.root, cfg.download)
    train_ix, val_ix = select(raw.train_y, raw.num_classes, cfg, val_given=False)
    meta = {**base_meta(cfg, raw.train_y[train_ix], raw.num_classes),
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


def _sources(cfg: DataConfig, root: Path) -> tuple[dict[str, ImageSplit | None], int,
                                                    list[str] | None, dict[str, str]]:
    """Each split's entries, the class count, the class names and the list files' sha256."""
    if cfg.dataset == "image_folder":
        if not (root / "train").is_dir() or not (root / "test").is_dir():
            raise LTError(f"data.root = {root} must hold train/ and test/ (and optionally val/), "
                          "each with one folder per class: the torchvision ImageFolder layout")
        names = class_folders(root / "train")
        src = {s: scan_folder(root / s, names, every_class=s == "train") if (root / s).is_dir()
               else None for s in SPLITS}
        return src, len(names), names, {}
    files = list_files(cfg.lists_dir, cfg.train_list, cfg.val_list, cfg.test_list, cfg.preset)
    src = {s: read_list(p) if p is not None else None for s, p in files.items()}
    if cfg.preset:
        check_sizes(cfg.preset, {s: len(v.paths) for s, v in src.items() if v is not None})
        k = preset(cfg.preset).num_classes
    else:
        k = cfg.num_classes or 1 + max(int(v.labels.max(initial=-1)) for v in src.values() if v)
    digests = {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in files.values() if p is not None}
    return src, k, None, digests


def _take(split: ImageSplit, ix: np.ndarray) -> ImageSplit:
    return ImageSplit([split.paths[i] for i in ix], split.labels[ix], [split.origin[i] for i in ix])


def prepare_files(cfg: DataConfig, quiet: bool = True) -> FileSplits:
    if not cfg.root:
        raise LTError(f"data.dataset = {cfg.dataset} needs data.root, the folder the images "
                      "(and, for image_folder, train/ val/ test/) are in")
    root = Path(cfg.root)
    if not root.is_dir():
        raise LTError(f"data.root = {root} is not a folder")
    src, k, names, list_sha = _sources(cfg, root)
    for s, entries in src.items():
        if entries is not None:
            check_labels(s, entries, k)
    check_disjoint(src)
    if src["test"] is None or not src["test"].paths:
        raise LTError(f"{cfg.dataset}: the test split is empty")
    train_ix, val_ix = select(src["train"].labels, k, cfg, val_given=src["val"] is not None)
    chosen = {"train": _take(src["train"], train_ix), "test": src["test"],
              "val": src["val"] if src["val"] is not None else _take(src["train"], val_ix)}
    sizes, mtimes = {}, {}
    for s in SPLITS:
        sizes[s], mtimes[s] = check_files(root, chosen[s], quiet=quiet,
                                          max_pixels=cfg.max_image_pixels)
    manifest = hashlib.sha256()
    for s in SPLITS:
        manifest.update(json.dumps([chosen[s].paths, chosen[s].labels.tolist(),
                                    sizes[s].tolist(), mtimes[s].tolist()]).encode())
    meta = {**base_meta(cfg, chosen["train"].labels, k), "root": str(cfg.root),
            "validation": "given" if src["val"] is not None else "carved",
            "image_size": int(cfg.image_size), "packed": bool(cfg.pack),
            "list_sha256": json.dumps(list_sha, sort_keys=True),
            "manifest_sha256": manifest.hexdigest()}
    if names is not None:
        meta["class_names"] = json.dumps(names)
    return FileSplits(cfg.dataset, k, str(cfg.root),
                      paths={s: np.asarray(chosen[s].paths, dtype=object) for s in SPLITS},
                      labels={s: chosen[s].labels for s in SPLITS}, sizes=sizes, mtimes=mtimes,
                      meta=meta, source=str(root))
