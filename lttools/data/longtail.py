"""Long-tailed subsets (the exponential profile of LDAM-DRW), the balanced validation split,
and the Many / Medium / Few class groups."""
from __future__ import annotations

import numpy as np

from lttools.errors import LTError, check_range

SELECTIONS = ("first", "shuffle")
MANY_ABOVE = 100  # Many: more than 100 training images
FEW_BELOW = 20  # Few: fewer than 20; Medium: 20..100
GROUPS = ("many", "medium", "few")


def profile_counts(num_classes: int, n_max: int, imb_ratio: float) -> np.ndarray:
    """n_c = int(n_max * (1/IR) ** (c / (C - 1))) for c = 0 .. C-1 (int() truncates)."""
    check_range("data.imb_ratio", imb_ratio, low=1)
    check_range("data.max_per_class", n_max, low=1)
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    c = np.arange(num_classes)
    # float64 in the same order as the reference's Python floats, so truncation agrees.
    return np.array([int(n_max * (1.0 / imb_ratio) ** (ci / (num_classes - 1.0))) for ci in c],
                    dtype=np.int64)


def split_long_tailed(labels: np.ndarray, num_classes: int, imb_ratio: float, n_max: int,
                      val_per_class: int, selection: str = "first",
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into `labels`.

    The last `val_per_class` images of every class (in file order) are reserved for a
    balanced validation split; the long-tailed subset is then drawn from what remains:
    the first n_c images in file order (`first`, the paper's) or n_c after a seeded shuffle
    (`shuffle`, LDAM-DRW / MiSLAS). A class with fewer than n_c images left keeps them all.
    """
    if selection not in SELECTIONS:
        raise LTError(f"unknown data.selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    check_range("data.val_per_class", val_per_class, low=0)
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    smallest = min(len(ix) for ix in per_class)
    if n_max > smallest:
        raise LTError(f"data.max_per_class = {n_max} is larger than the smallest class "
                      f"({smallest} training images); valid range: [1, {smallest}]")
    if val_per_class >= smallest:
        raise LTError(f"data.val_per_class = {val_per_class} leaves no training images in the "
                      f"smallest class ({smallest}); valid range: [0, {smallest - 1}]")
    counts = profile_counts(num_classes, n_max, imb_ratio)
    if counts.min() < 1:
        raise LTError(f"data.imb_ratio = {imb_ratio:g} with data.max_per_class = {n_max} gives the "
                      f"smallest class int({n_max} / {imb_ratio:g}) = 0 training images; valid: "
                      f"imb_ratio <= max_per_class (here at most {n_max})")
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c, ix in enumerate(per_class):
        keep = len(ix) - val_per_class
        val.append(ix[keep:])
        pool = ix[:keep]
        if selection == "shuffle":
            pool = pool.copy()
            rng.shuffle(pool)
        train.append(pool[: counts[c]])
    return np.concatenate(train), np.concatenate(val)


def class_groups(train_counts: np.ndarray, many_above: int = MANY_ABOVE,
                 few_below: int = FEW_BELOW) -> dict[str, np.ndarray]:
    """Class indices of each group, by training count: Many > many_above, Medium
    few_below..many_above, Few < few_below (defaults 100 and 20)."""
    counts = np.asarray(train_counts)
    return {
        "many": np.flatnonzero(counts > many_above),
        "medium": np.flatnonzero((counts >= few_below) & (counts <= many_above)),
        "few": np.flatnonzero(counts < few_below),
    }


def carve_validation(labels: np.ndarray, num_classes: int,
                     val_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into `labels` keeping the training split as it is (longtail:
    given), but the last `val_per_class` images of every class (in file order) set aside as a
    balanced validation split. Both in file order."""
    check_range("data.val_per_class", val_per_class, low=0)
    labels = np.asarray(labels)
    val = []
    for c in range(num_classes):
        ix = np.flatnonzero(labels == c)
        if len(ix) and val_per_class >= len(ix):
            raise LTError(f"data.val_per_class = {val_per_class} leaves no training images in "
                          f"class {c} ({len(ix)} images); valid range: [0, {len(ix) - 1}]")
        val.append(ix[len(ix) - val_per_class:] if val_per_class else ix[:0])
    val_ix = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_ix = np.setdiff1d(np.arange(len(labels)), val_ix)
    return train_ix, val_ix
