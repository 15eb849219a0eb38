"""The prepared dataset, the single source that stage 1 and feature extraction both read:

- small datasets (Fashion-MNIST, CIFAR): long-tailed train, validation and test images as
  uint8 arrays in one HDF5 file (`Splits`);
- image files (a folder tree or list files): a manifest per split (paths relative to the
  image root, labels, sizes, modification times) and, with `data.pack`, the images
  themselves re-encoded at a reduced size in one packed file (`FileSplits`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lttools.atomic import atomic_path
from lttools.data.longtail import FEW_BELOW, MANY_ABOVE, SELECTIONS
from lttools.errors import LTError, check_range

SPLITS = ("train", "val", "test")
LONGTAILS = ("exponential", "given")
FILE_DATASETS = ("image_folder", "image_list")
PACKED_FILE = "images.h5"
LISTS_DIR = "data/lists"  # list files live here: DVC watches this folder, never the images
MAX_IMAGE_PIXELS = 89_478_485  # PIL's decompression-bomb limit (~256 MiB of RGB)


@dataclass(frozen=True)
class DataConfig:
    """The `data:` section of params.yaml."""
    dataset: str
    imb_ratio: float | None = None  # largest / smallest class (longtail: exponential)
    max_per_class: int | None = None  # n_max of the exponential profile
    root: str | None = None
    download: bool = False
    val_per_class: int = 0
    selection: str = "first"
    seed: int = 0
    longtail: str = "exponential"  # exponential: draw the profile; given: the training split as it is
    many_above: int = MANY_ABOVE  # Many: more training images than this
    few_below: int = FEW_BELOW  # Few: fewer than this; Medium: the rest
    preset: str = ""  # image_list: imagenet_lt | inat2018 | places_lt
    lists_dir: str = LISTS_DIR  # where list files are (a DVC dependency of prepare_data)
    train_list: str = ""  # image_list without a preset
    val_list: str = ""
    test_list: str = ""
    num_classes: int = 0  # image_list without a preset: 0 = largest label + 1
    image_size: int = 224  # image files: the crop stage 1 and extraction feed the backbone
    pack: bool = False  # image files: also write the images re-encoded at a reduced size
    max_image_pixels: int = MAX_IMAGE_PIXELS  # image files: a larger image is refused, named

    def validate(self) -> None:
        if self.longtail not in LONGTAILS:
            raise LTError(f"data.longtail = {self.longtail!r} is not valid; choose one of "
                          f"{', '.join(LONGTAILS)}")
        if self.longtail == "exponential":
            if self.imb_ratio is None or self.max_per_class is None:
                raise LTError("data.longtail = exponential needs data.imb_ratio and "
                              "data.max_per_class")
            check_range("data.imb_ratio", self.imb_ratio, low=1)
            check_range("data.max_per_class", self.max_per_class, low=1)
        if self.selection not in SELECTIONS:
            raise LTError(f"unknown data.selection {self.selection!r}; valid: "
                          f"{', '.join(SELECTIONS)}")
        check_range("data.val_per_class", self.val_per_class, low=0)
        check_range("data.few_below", self.few_below, low=0)
        check_range("data.many_above", self.many_above, low=self.few_below)
        check_range("data.image_size", self.image_size, low=8)
        check_range("data.num_classes", self.num_classes, low=0)
        check_range("data.max_image_pixels", self.max_image_pixels, low=1)
        lists = Path(self.lists_dir).as_posix()
        if lists != LISTS_DIR and not lists.startswith(LISTS_DIR + "/"):
            raise LTError(f"data.lists_dir = {self.lists_dir!r} lies outside {LISTS_DIR}/, the "
                          "folder DVC tracks as prepare_data's dependency")
        for name in ("train_list", "val_list", "test_list"):
            value = getattr(self, name)
            if value and not Path(value).as_posix().startswith(LISTS_DIR + "/"):
                raise LTError(f"data.{name} = {value!r} lies outside {LISTS_DIR}/, the folder DVC "
                              f"tracks as prepare_data's dependency: put the list files there")

    @property
    def files(self) -> bool:
        return self.dataset in FILE_DATASETS


@dataclass
class Splits:
    """A small dataset held as arrays."""
    dataset: str
    num_classes: int
    images: dict[str, np.ndarray]  # split -> uint8 [N, C, H, W]
    labels: dict[str, np.ndarray]  # split -> int64 [N]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where the raw files were read from (reported, not stored)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels["train"], minlength=self.num_classes)

    @property
    def in_channels(self) -> int:
        return int(self.images["train"].shape[1])

    def size(self, split: str) -> int:
        return len(self.labels[split])


@dataclass
class FileSplits:
    """A dataset of image files: per split the paths (relative to `root`), labels, sizes and
    modification times; `packed` is the packed image file when there is one."""
    dataset: str
    num_classes: int
    root: str
    paths: dict[str, np.ndarray]  # split -> object array of str
    labels: dict[str, np.ndarray]
    sizes: dict[str, np.ndarray]
    mtimes: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    packed: Path | None = None
    source: str = ""

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels["train"], minlength=self.num_classes)

    @property
    def in_channels(self) -> int:
        return 3  # every image is read as RGB

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def size(self, split: str) -> int:
        return len(self.labels[split])


AnySplits = Splits | FileSplits


def write_splits(path: str | Path, splits: AnySplits) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in splits.meta.items():
            f.attrs[k] = v
        f.attrs["num_classes"] = splits.num_classes
        f.attrs["kind"] = "files" if isinstance(splits, FileSplits) else "arrays"
        for s in SPLITS:
            f.create_dataset(f"{s}/labels", data=splits.labels[s])
            if isinstance(splits, FileSplits):
                f.create_dataset(f"{s}/paths", data=splits.paths[s].astype(object),
                                 dtype=h5py.string_dtype())
                f.create_dataset(f"{s}/sizes", data=splits.sizes[s])
                f.create_dataset(f"{s}/mtimes", data=splits.mtimes[s])
            else:
                f.create_dataset(f"{s}/images", data=splits.images[s])


def read_splits(path: str | Path) -> AnySplits:
    path = Path(path)
    if not path.exists():
        raise LTError(f"prepared dataset {path} does not exist; run `dvc repro prepare_data`")
    try:
        with h5py.File(path, "r") as f:
            meta = {m: (v.item() if hasattr(v, "item") else v) for m, v in f.attrs.items()}
            labels = {s: f[f"{s}/labels"][()] for s in SPLITS}
            if meta.get("kind") == "files":
                arrays = {key: {s: f[f"{s}/{key}"][()] for s in SPLITS}
                          for key in ("sizes", "mtimes")}
                paths = {s: np.asarray(f[f"{s}/paths"].asstr()[()], dtype=object) for s in SPLITS}
            else:
                images = {s: f[f"{s}/images"][()] for s in SPLITS}
    except (OSError, KeyError) as exc:
        raise LTError(f"{path} is not a valid prepared dataset ({exc}); delete it and run "
                      "`dvc repro prepare_data`") from exc
    k = int(meta.pop("num_classes"))
    kind = meta.pop("kind", "arrays")
    if kind == "files":
        packed = path.parent / PACKED_FILE
        return FileSplits(str(meta["dataset"]), k, str(meta["root"]), paths, labels,
                          arrays["sizes"], arrays["mtimes"], meta,
                          packed if meta.get("packed") else None)
    return Splits(str(meta["dataset"]), k, images, labels, meta)


def class_names(splits: AnySplits) -> list[str] | None:
    names = splits.meta.get("class_names")
    return json.loads(names) if names else None
