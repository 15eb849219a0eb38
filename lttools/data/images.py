"""Datasets of image files: a torchvision ImageFolder tree, or list files of
`relative/path label` lines (ImageNet-LT, iNaturalist 2018, Places-LT, or your own), over an
image root. Each listed file is checked once when the dataset is prepared: it must exist and
open as an image; its size and modification time go into the manifest that the later stages
depend on (so DVC never hashes the images themselves).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lttools.data.prepared import SPLITS
from lttools.errors import LTError, unknown_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm", ".pbm")


@dataclass(frozen=True)
class Preset:
    """A public long-tailed benchmark's list files (from facebookresearch/classifier-balancing)
    and the sizes they must have."""
    lists: dict[str, str]  # split -> list file name; a split without one is carved or absent
    num_classes: int
    sizes: dict[str, int]


PRESETS = {
    "imagenet_lt": Preset({"train": "ImageNet_LT_train.txt", "val": "ImageNet_LT_val.txt",
                           "test": "ImageNet_LT_test.txt"}, 1000,
                          {"train": 115_846, "val": 20_000, "test": 50_000}),
    # iNaturalist 2018 has no test labels: its validation list is the test split, as in the
    # references; a validation split is carved from train (data.val_per_class) or absent.
    "inat2018": Preset({"train": "iNaturalist18_train.txt", "test": "iNaturalist18_val.txt"},
                       8142, {"train": 437_513, "test": 24_426}),
    "places_lt": Preset({"train": "Places_LT_train.txt", "val": "Places_LT_val.txt",
                         "test": "Places_LT_test.txt"}, 365,
                        {"train": 62_500, "val": 7_300, "test": 36_500}),
}


@dataclass
class ImageSplit:
    """One split: paths relative to the image root, labels, and where each entry came from
    (the list file and its line, or the folder), for error messages."""
    paths: list[str]
    labels: np.ndarray
    origin: list[str]


def read_list(path: Path) -> ImageSplit:
    if not path.exists():
        raise LTError(f"list file {path} does not exist")
    paths, labels, origin = [], [], []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
                raise LTError(f"{path}:{number}: expected `relative/path label`, found "
                              f"{line.strip()!r}")
            paths.append(" ".join(parts[:-1]))
            labels.append(int(parts[-1]))
            origin.append(f"{path}:{number}")
    return ImageSplit(paths, np.asarray(labels, np.int64), origin)


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir())


def scan_folder(folder: Path, classes: list[str]) -> ImageSplit:
    """`folder/<class>/**/<image>` in sorted order, labelled by the class's index in
    `classes` (the training folder's sorted class names)."""
    paths, labels = [], []
    index = {c: i for i, c in enumerate(classes)}
    for name in class_folders(folder):
        if name not in index:
            raise LTError(f"{folder / name} is a class the training folder does not have; "
                          f"classes: {', '.join(classes[:10])}{' …' if len(classes) > 10 else ''}")
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames.sort()
            for fname in sorted(filenames):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(str((Path(dirpath) / fname).relative_to(folder.parent)))
                    labels.append(index[name])
    return ImageSplit(paths, np.asarray(labels, np.int64), [str(folder)] * len(paths))


def check_labels(split: str, images: ImageSplit, num_classes: int) -> None:
    bad = np.flatnonzero((images.labels < 0) | (images.labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise LTError(f"{images.origin[i]}: label {images.labels[i]} of {images.paths[i]} is out "
                      f"of range; valid labels: 0..{num_classes - 1} ({num_classes} classes)")
    seen: dict[str, int] = {}
    for i, p in enumerate(images.paths):
        if p in seen:
            raise LTError(f"{images.origin[i]}: {p} is listed twice in the {split} split (also "
                          f"at {images.origin[seen[p]]})")
        seen[p] = i


def _probe(args: tuple[Path, str, str]) -> tuple[int, int] | str:
    """(size, mtime_ns) of an image that opens, else why not."""
    from PIL import Image, UnidentifiedImageError

    root, rel, origin = args
    path = root / rel
    try:
        st = path.stat()
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError:
        return f"{origin}: {path} does not exist"
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
        return f"{origin}: {path} is unreadable or not an image ({type(exc).__name__}: {exc})"
    return st.st_size, st.st_mtime_ns


def check_files(root: Path, images: ImageSplit, workers: int = 8,
                quiet: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and modification times of every file, each opened once as an image; the first
    failure (in list order) is an error naming the file and where it was listed."""
    from tqdm.auto import tqdm

    jobs = [(root, p, o) for p, o in zip(images.paths, images.origin)]
    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(_probe, jobs, chunksize=64), total=len(jobs),
                            desc="checking images", unit="img", disable=quiet))
    for r in results:
        if isinstance(r, str):
            raise LTError(r + "; fix the file or its entry, then re-run `dvc repro prepare_data`")
    arr = np.asarray(results, np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown_name("data.preset", name, list(PRESETS))
    return PRESETS[name]


def check_sizes(name: str, found: dict[str, int]) -> None:
    p = preset(name)
    wrong = {s: (n, found.get(s, 0)) for s, n in p.sizes.items() if found.get(s, 0) != n}
    if wrong:
        said = "; ".join(f"{s}: expected {e:,}, found {f:,}" for s, (e, f) in wrong.items())
        raise LTError(f"data.preset = {name!r}: the list files do not have the known sizes "
                      f"({said}); use the official list files, or drop the preset")


def list_files(lists_dir: str, train: str, val: str, test: str,
               preset_name: str) -> dict[str, Path | None]:
    """The list file of each split: the preset's names in `lists_dir`, or the given paths."""
    if preset_name:
        names = preset(preset_name).lists
        return {s: (Path(lists_dir) / names[s]) if s in names else None for s in SPLITS}
    given = {"train": train, "val": val, "test": test}
    if not train or not test:
        raise LTError("data.dataset = image_list needs data.train_list and data.test_list (and "
                      "optionally data.val_list), or a data.preset: "
                      f"{', '.join(sorted(PRESETS))}")
    return {s: Path(p) if p else None for s, p in given.items()}
