"""A method's test-set predictions, per seed, at the selected epoch and at the last epoch: the
raw material of every interval and paired test (lttools/stats.py), kept as a DVC output so that
comparisons across methods, backbones and commits need no re-training.

The file is an .npz of integer arrays (no pickled objects), written byte for byte the same for
the same predictions: labels [N], selected [S, N], last [S, N], seeds [S], train_counts [K],
thresholds [2] (Many above, Few below), and test_set: a JSON text naming the test images
(dataset, the files they came from, a hash of the labels), which decides whether two results
may be paired.
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

ARRAYS = ("labels", "selected", "last", "seeds", "train_counts", "thresholds")
SOURCE_ATTRS = ("raw_sha256", "list_sha256", "manifest_sha256")  # what names the image files


@dataclass
class Predictions:
    labels: np.ndarray  # [N]
    selected: np.ndarray  # [S, N] class ids at each seed's selected grid point and epoch
    last: np.ndarray  # [S, N] at the last epoch (the grid point best on validation there)
    seeds: np.ndarray  # [S]
    train_counts: np.ndarray  # [K]
    thresholds: tuple[int, int]
    test_set: dict[str, Any]

    def correct(self, which: str = "selected") -> np.ndarray:
        """[S, N] booleans: seed s predicted test image i right."""
        return getattr(self, which) == self.labels[None]


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


def _class_ids(x: np.ndarray, classes: int) -> np.ndarray:
    return np.asarray(x, dtype=np.int16 if classes < 2 ** 15 else np.int32)


def save_predictions(path: str | Path, p: Predictions) -> None:
    """Atomically (temporary file, then rename)."""
    data = predictions_bytes(p)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def predictions_bytes(p: Predictions) -> bytes:
    """The file's bytes: the same for the same predictions (fixed zip timestamps)."""
    k = len(p.train_counts)
    arrays = {"labels": _class_ids(p.labels, k), "selected": _class_ids(p.selected, k),
              "last": _class_ids(p.last, k), "seeds": np.asarray(p.seeds, dtype=np.int64),
              "train_counts": np.asarray(p.train_counts, dtype=np.int64),
              "thresholds": np.asarray(p.thresholds, dtype=np.int64),
              "test_set": np.asarray(json.dumps(p.test_set, sort_keys=True))}
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
    """Read a predictions file (a path or an open binary file); a clear error when it is not
    one, or is damaged."""
    where = name or str(source)
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = [k for k in (*ARRAYS, "test_set") if k not in z.files]
            if missing:
                raise LTError(f"{where} is not an lttools predictions file (no "
                              f"{', '.join(missing)}); re-run the method's retrain stage")
            a = {k: z[k] for k in (*ARRAYS, "test_set")}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise LTError(f"{where} is unreadable ({exc}); re-run the method's retrain stage "
                      "(`dvc repro -f retrain@<key>`) or `dvc pull` it again") from exc
    labels = a["labels"].astype(np.int64)
    p = Predictions(labels, a["selected"].astype(np.int64), a["last"].astype(np.int64),
                    a["seeds"], a["train_counts"], tuple(int(t) for t in a["thresholds"]),
                    json.loads(str(a["test_set"])))
    if p.selected.shape != p.last.shape or p.selected.ndim != 2 or \
            p.selected.shape[1] != len(labels):
        raise LTError(f"{where}: predictions of shape {p.selected.shape} / {p.last.shape} do "
                      f"not match {len(labels)} test labels; re-run the method's retrain stage")
    return p
