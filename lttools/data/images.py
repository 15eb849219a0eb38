"""Datasets of image files: a torchvision ImageFolder tree, or list files of
`relative/path label` lines (ImageNet-LT, iNaturalist 2018, Places-LT, or your own), over an
image root. Each listed file is checked once when the dataset is prepared: it must exist and
open as an image; its size and modification time go into the manifest that the later stages
depend on (so DVC never hashes the images themselves).
"""
from __future__ import annotations

import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lttools.data.prepared import MAX_IMAGE_PIXELS, SPLITS
from lttools.errors import LTError, unknown_name

LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only: `--1` or `²` are not labels
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


def _list_lines(path: Path) -> list[str]:
    """The list file's lines as text: UTF-8, a byte-order mark at the start dropped, any line
    ending; a line that is not UTF-8 is an error naming it."""
    if not path.exists():
        raise LTError(f"list file {path} does not exist")
    lines = path.read_bytes().splitlines()
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise LTError(f"{path}:{number}: the line is not UTF-8 ({exc.reason} at byte "
                          f"{exc.start}: {raw[max(0, exc.start - 10):exc.end + 10]!r}); save the "
                          "list file as UTF-8") from None
    return out


def normalized_path(path: str, origin: str) -> str:
    """The path as the image root sees it (`a/./b`, `a//b`, `a/x/../b` -> `a/b`); a path that
    is absolute or leaves the root is an error naming where it was listed."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(norm) or re.match(r"[A-Za-z]:/", norm) or norm == ".." or \
            norm.startswith("../"):
        raise LTError(f"{origin}: {path!r} is not inside the image root; list paths must be "
                      "relative to data.root and stay under it (no leading `/`, no `..` above it)")
    return norm


def read_list(path: Path) -> ImageSplit:
    """`relative/path label` lines: the label is after the last run of whitespace, so a path
    may hold spaces; blank lines are skipped."""
    paths, labels, origin = [], [], []
    for number, line in enumerate(_list_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        where = f"{path}:{number}"
        if len(parts) < 2 or not LABEL.fullmatch(parts[1]):
            raise LTError(f"{where}: expected `relative/path label` (an integer label), found "
                          f"{line.strip()!r}")
        paths.append(normalized_path(parts[0], where))
        labels.append(int(parts[1]))
        origin.append(where)
    return ImageSplit(paths, np.asarray(labels, np.int64), origin)


def _visible(name: str) -> bool:
    """Hidden files and folders (`.ipynb_checkpoints/`, `.DS_Store`, ...) are not data."""
    return not name.startswith(".")


def _utf8_name(path: Path) -> str:
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LTError(f"{text.encode('utf-8', 'surrogateescape')!r}: the file name is not valid "
                      "UTF-8 (it cannot be recorded in the manifest); rename it") from None
    return text


def class_folders(folder: Path) -> list[str]:
    """The sorted class folder names, hidden folders skipped."""
    return sorted(_utf8_name(Path(d.name)) for d in folder.iterdir()
                  if d.is_dir() and _visible(d.name))


def scan_folder(folder: Path, classes: list[str], every_class: bool = False) -> ImageSplit:
    """`folder/<class>/**/<image>` in sorted order, labelled by the class's index in
    `classes` (the training folder's sorted class names); hidden files and folders skipped.
    `every_class`: a class folder without images is an error (the training split)."""
    paths, labels = [], []
    index = {c: i for i, c in enumerate(classes)}
    for name in class_folders(folder):
        if name not in index:
            raise LTError(f"{folder / name} is a class the training folder does not have; "
                          f"classes: {', '.join(classes[:10])}{' …' if len(classes) > 10 else ''}")
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for fname in sorted(filenames):
                if _visible(fname) and fname.lower().endswith(IMAGE_EXTENSIONS):
                    rel = (Path(dirpath) / fname).relative_to(folder.parent)
                    paths.append(_utf8_name(rel).replace(os.sep, "/"))
                    labels.append(index[name])
    labels_arr = np.asarray(labels, np.int64)
    if every_class:
        empty = [c for c, n in zip(classes, np.bincount(labels_arr, minlength=len(classes)))
                 if n == 0]
        if empty:
            raise LTError(f"{folder / empty[0]} holds no images (of {', '.join(IMAGE_EXTENSIONS)})"
                          f"{f' and {len(empty) - 1} more class folders' if len(empty) > 1 else ''}"
                          "; a class needs training images: remove the folder or fill it")
    return ImageSplit(paths, labels_arr, [str(folder)] * len(paths))


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


def check_disjoint(src: dict[str, ImageSplit | None]) -> None:
    """No image in two splits (a test image in training is a leak), paths compared normalised."""
    seen: dict[str, tuple[str, str]] = {}
    for split in SPLITS:
        entries = src.get(split)
        for p, o in zip(entries.paths if entries else [], entries.origin if entries else []):
            if p in seen and seen[p][0] != split:
                raise LTError(f"{o}: {p} is in the {split} split and also in the {seen[p][0]} "
                              f"split (at {seen[p][1]}); an image in two splits leaks the "
                              "evaluation: remove one entry")
            seen.setdefault(p, (split, o))


def _probe(args: tuple[Path, str, str, int]) -> tuple[int, int] | str:
    """(size, mtime_ns) of an image that decodes, else why not. A JPEG is decoded at 1/8
    scale (cheap, and reads all its data: a truncated file fails), other formats verified."""
    from PIL import Image, UnidentifiedImageError

    from lttools.data.decode import NO_FIXED_RANGE

    root, rel, origin, max_pixels = args
    path = root / rel
    try:
        st = path.stat()
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                return (f"{origin}: {path} is {width:,} x {height:,} = {width * height:,} pixels, "
                        f"over data.max_image_pixels = {max_pixels:,} (decoding it takes about "
                        f"{width * height * 3 / 2**30:.1f} GiB); shrink the image or raise "
                        "data.max_image_pixels")
            if img.mode in NO_FIXED_RANGE:
                return (f"{origin}: {path} has {'32-bit float' if img.mode == 'F' else '32-bit'} "
                        f"pixels (mode {img.mode}), which have no fixed range to map to 8 bits; "
                        "convert it to 8-bit (or 16-bit) first")
            if img.format == "JPEG":
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
            else:
                img.verify()
    except FileNotFoundError:
        return f"{origin}: {path} does not exist"
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
        return f"{origin}: {path} is unreadable or not an image ({type(exc).__name__}: {exc})"
    return st.st_size, st.st_mtime_ns


def check_files(root: Path, images: ImageSplit, workers: int = 8, quiet: bool = True,
                max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and modification times of every file, each decoded once; the first failure (in
    list order) is an error naming the file and where it was listed."""
    from tqdm.auto import tqdm

    jobs = [(root, p, o, max_pixels) for p, o in zip(images.paths, images.origin)]
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
