"""The per-seed per-image results file: round trip, the same bytes for the same results, small
enough for Git, the older format (class ids in the DVC cache) read and paired image by image,
a clear error for a damaged file, and when two test sets may be paired."""
import io
import json
import zipfile

import numpy as np
import pytest

from lttools.errors import LTError
from lttools.predictions import (Predictions, load_predictions, pairing_problem,
                                 save_predictions, identify_test_set)
from lttools.stats import bootstrap


def class_ids(seed: int = 0, n: int = 43):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    return labels, rng.integers(0, 5, (3, n)), rng.integers(0, 5, (3, n))


def example(seed: int = 0) -> Predictions:
    labels, selected, last = class_ids(seed)
    identity = identify_test_set({"dataset": "toy", "raw_sha256": "abc"}, labels)
    return Predictions.from_class_ids(labels, selected, last, np.array([0, 1, 2]),
                                      np.array([50, 30, 20, 10, 5]), (100, 20), identity)


def test_round_trip_and_same_bytes(tmp_path):
    p = example()
    save_predictions(tmp_path / "a.npz", p)
    save_predictions(tmp_path / "b.npz", p)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    q = load_predictions(tmp_path / "a.npz")
    for name in ("labels", "selected", "last", "seeds", "train_counts"):
        assert (getattr(q, name) == getattr(p, name)).all(), name
    assert q.thresholds == (100, 20) and q.test_set == p.test_set
    assert not list(tmp_path.glob(".*.tmp"))


def test_results_are_the_class_ids_right_in_class_order():
    labels, selected, last = class_ids()
    p = example()
    order = np.argsort(labels, kind="stable")
    assert (p.labels == np.sort(labels)).all()
    assert (p.correct() == (selected == labels)[:, order]).all()
    assert (p.correct("last") == (last == labels)[:, order]).all()
    assert p.correct().sum() == (selected == labels).sum()


def test_bits_are_small_enough_for_git(tmp_path):
    """3 seeds x 10,000 images: two bits per seed and image at most (selected and last),
    labels as class sizes; a few KB, not the class ids' 60 KB."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000)
    ids = np.where(rng.random((3, 10_000)) < 0.8, labels, (labels + 1) % 10)
    p = Predictions.from_class_ids(labels, ids, ids, np.arange(3), np.ones(10, int), (100, 20),
                                   {})
    save_predictions(tmp_path / "p.npz", p)
    assert (tmp_path / "p.npz").stat().st_size < 2 * 3 * 10_000 / 8 + 2_000


def format_1_bytes(labels, selected, last, test_set) -> bytes:
    """The file as lttools wrote it before format 2 (class ids, the test set's own order)."""
    out = io.BytesIO()
    arrays = {"labels": labels.astype(np.int16), "selected": selected.astype(np.int16),
              "last": last.astype(np.int16), "seeds": np.arange(3),
              "train_counts": np.array([50, 30, 20, 10, 5]), "thresholds": np.array([100, 20]),
              "test_set": np.asarray(json.dumps(test_set, sort_keys=True))}
    with zipfile.ZipFile(out, "w") as zf:
        for name, arr in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, arr, allow_pickle=False)
            zf.writestr(f"{name}.npy", buffer.getvalue())
    return out.getvalue()


def test_format_1_is_read_and_pairs_with_format_2(tmp_path):
    labels, selected, last = class_ids()
    p = example()
    (tmp_path / "old.npz").write_bytes(format_1_bytes(labels, selected, last, p.test_set))
    old = load_predictions(tmp_path / "old.npz")
    assert (old.labels == p.labels).all() and (old.correct() == p.correct()).all()
    # paired image by image: the same results in both formats differ by exactly nothing
    boot = bootstrap({"old": old.correct(), "new": p.correct()}, p.labels, p.train_counts,
                     p.thresholds)
    assert boot.difference("old", "new") == (0.0, 1.0)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_ours"])
def test_damaged_file_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "p.npz"
    save_predictions(path, example())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a zip at all")
    else:
        np.savez(path, labels=np.arange(3))
    with pytest.raises(LTError) as exc:
        load_predictions(path)
    assert str(path) in str(exc.value) and "re-run" in str(exc.value)


def test_pairing_needs_the_same_test_images():
    a = example(0).test_set
    assert pairing_problem(a, dict(a)) is None
    other_data = dict(a, raw_sha256="def")
    assert "raw data files" in pairing_problem(a, other_data)
    other_labels = identify_test_set({"dataset": "toy", "raw_sha256": "abc"}, np.zeros(40, int))
    assert "test labels" in pairing_problem(a, other_labels)
