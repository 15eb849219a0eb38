"""A method's per-image test results, per seed, at the selected epoch and at the last epoch:
the raw material of every interval and paired test (lttools/stats.py), small enough to travel
with Git, so that any clone can compare its results with any commit's without a DVC remote.

The file is an .npz of integer arrays (no pickled objects), written byte for byte the same for
the same results (format 2): class_sizes [K] (test images per class), selected_bits and
last_bits [S, ceil(N / 8)] (np.packbits of "seed s got image i right", the images in class
order), seeds [S], backbones [S] (only with several backbone replicates: the replicate of
each row, rows backbone-major, every backbone with the same stage-2 seeds), train_counts [K], thresholds [2] (Many above, Few below), and test_set: a
JSON text naming the test images (dataset, the files they came from, a hash of the labels in
their own order), which decides whether two results may be paired. 3 seeds x 10,000 test images
take 7.5 KB; ImageNet-LT's 50,000, 37.5 KB.

Format 1 (older commits; a DVC output then, in the cache and remote, not Git): labels [N] and the
predicted class ids selected, last [S, N] in the test set's own order; read and put in class
order, so results of either format pair image by image.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lttools.atomic import atomic_path
from lttools.errors import LTError

FORMAT = 2
ARRAYS = ("class_sizes", "selected_bits", "last_bits", "seeds", "train_counts", "thresholds")
ARRAYS_V1 = ("labels", "selected", "last", "seeds", "train_counts", "thresholds")
SOURCE_ATTRS = ("raw_sha256", "list_sha256", "manifest_sha256")  # what names the image files


@dataclass
class Predictions:
    labels: np.ndarray  # [N], in class order (the test set's order, stably sorted by class)
    selected: np.ndarray  # [S, N] bool: right at each seed's selected grid point and epoch
    last: np.ndarray  # [S, N] bool: right at the last epoch (the grid point best there)
    seeds: np.ndarray  # [S]
    train_counts: np.ndarray  # [K]
    thresholds: tuple[int, int]
    test_set: dict[str, Any]
    backbones: np.ndarray | None = None  # [S] each row's backbone replicate (None: one backbone)

    @classmethod
    def from_class_ids(cls, labels: np.ndarray, selected: np.ndarray, last: np.ndarray,
                       seeds: np.ndarray, train_counts: np.ndarray, thresholds: tuple[int, int],
                       test_set: dict[str, Any], backbones: np.ndarray | None = None,
                       ) -> "Predictions":
        """From predicted class ids [S, N] in the test set's own order."""
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        right = lambda ids: (np.asarray(ids)[:, order] == labels[order][None])  # noqa: E731
        return cls(labels[order], right(selected), right(last), np.asarray(seeds),
                   np.asarray(train_counts), tuple(int(t) for t in thresholds), test_set,
                   None if backbones is None else np.asarray(backbones))

    def correct(self, which: str = "selected") -> np.ndarray:
        """[S, N] booleans: run s got test image i right (images in class order)."""
        return getattr(self, which)

    @property
    def num_backbones(self) -> int:
        return 1 if self.backbones is None else len(np.unique(self.backbones))

    def runs(self, which: str = "selected") -> np.ndarray:
        """What lttools.stats.bootstrap takes: [S, N] for one backbone, [B, S, N] for B
        backbone replicates."""
        c = self.correct(which)
        b = self.num_backbones
        return c if b < 2 else c.reshape(b, -1, c.shape[-1])
def identify_test_set(attrs: dict[str, Any], labels: np.ndarray) -> dict[str, Any]:
    """What the test images are, from the feature store's record of the data: the dataset, the
    files the images came from (for an image folder the manifest also covers the training
    subset, so it can only err on the side of refusing a pairing), and the labels' hash."""
    out = {"dataset": attrs.get("dataset"), "test_images": int(len(labels)),
           "labels_sha256": hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64)
                                           .tobytes()).hexdigest()}
    out.update({k: attrs[k] for k in SOURCE_ATTRS if attrs.get(k)})
    return out


def pairing_problem(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why two results' test sets differ (None: the same images, results may be paired)."""
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not differ:
        return None
    words = {"dataset": "dataset", "test_images": "number of test images",
             "labels_sha256": "test labels", "raw_sha256": "raw data files",
             "list_sha256": "list files", "manifest_sha256": "image files (manifest)"}
    return "different " + ", ".join(words.get(k, k) for k in differ) + " (" + "; ".join(
        f"{k}: {str(a.get(k))[:24]} vs {str(b.get(k))[:24]}" for k in differ) + ")"


def save_predictions(path: str | Path, p: Predictions) -> None:
    """Atomically (temporary file, then rename)."""
    data = predictions_bytes(p)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def predictions_bytes(p: Predictions) -> bytes:
    """The file's bytes: the same for the same results (fixed zip timestamps)."""
    labels = np.asarray(p.labels, dtype=np.int64)
    if len(labels) and (np.diff(labels) < 0).any():
        raise ValueError("Predictions.labels must be in class order (use from_class_ids)")
    arrays = {"format": np.asarray(FORMAT, dtype=np.int64),
              "class_sizes": np.bincount(labels, minlength=len(p.train_counts)).astype(np.int64),
              "selected_bits": np.packbits(np.asarray(p.selected, dtype=bool), axis=1),
              "last_bits": np.packbits(np.asarray(p.last, dtype=bool), axis=1),
              "seeds": np.asarray(p.seeds, dtype=np.int64),
              "train_counts": np.asarray(p.train_counts, dtype=np.int64),
              "thresholds": np.asarray(p.thresholds, dtype=np.int64),
              "test_set": np.asarray(json.dumps(p.test_set, sort_keys=True))}
    if p.backbones is not None:
        arrays["backbones"] = np.asarray(p.backbones, dtype=np.int64)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())
    return out.getvalue()


def load_predictions(source: str | Path | io.BytesIO, name: str | None = None) -> Predictions:
    """Read a predictions file, format 2 or 1 (a path or an open binary file); a clear error
    when it is not one, or is damaged."""
    where = name or str(source)
    try:
        with np.load(source, allow_pickle=False) as z:
            keys = ARRAYS if "class_sizes" in z.files else ARRAYS_V1
            missing = [k for k in (*keys, "test_set") if k not in z.files]
            if missing:
                raise LTError(f"{where} is not an lttools predictions file (no "
                              f"{', '.join(missing)}); re-run the method's retrain stage")
            a = {k: z[k] for k in (*keys, "test_set")}
            backbones = z["backbones"] if "backbones" in z.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise LTError(f"{where} is unreadable ({exc}); re-run the method's retrain stage "
                      "(`dvc repro -f retrain@<key>`) or `git checkout` it again") from exc
    test_set, thresholds = json.loads(str(a["test_set"])), tuple(int(t) for t in a["thresholds"])
    if keys is ARRAYS_V1:
        sel, last = a["selected"], a["last"]
        if sel.shape != last.shape or sel.ndim != 2 or sel.shape[1] != len(a["labels"]):
            raise LTError(f"{where}: predictions of shape {sel.shape} / {last.shape} do not "
                          f"match {len(a['labels'])} test labels; re-run the method's retrain "
                          "stage")
        return Predictions.from_class_ids(a["labels"], sel, last, a["seeds"], a["train_counts"],
                                          thresholds, test_set)
    sizes = a["class_sizes"].astype(np.int64)
    n, seeds = int(sizes.sum()), a["seeds"]
    bits = {k: a[f"{k}_bits"] for k in ("selected", "last")}
    if (sizes < 0).any() or any(b.shape != (len(seeds), (n + 7) // 8) for b in bits.values()):
        raise LTError(f"{where}: per-image results of shape {bits['selected'].shape} / "
                      f"{bits['last'].shape} do not match {len(seeds)} seeds x {n} test images; "
                      "re-run the method's retrain stage")
    if backbones is not None and (backbones.shape != seeds.shape or len(seeds) % len(
            np.unique(backbones))):
        raise LTError(f"{where}: backbone replicates {backbones.tolist()} do not match "
                      f"{len(seeds)} runs (the same stage-2 seeds on each backbone); re-run the "
                      "method's retrain stage")
    right = {k: np.unpackbits(b, axis=1, count=n).astype(bool) for k, b in bits.items()}
    return Predictions(np.repeat(np.arange(len(sizes)), sizes), right["selected"], right["last"],
                       seeds, a["train_counts"], thresholds, test_set, backbones)
