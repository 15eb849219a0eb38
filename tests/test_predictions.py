"""The per-seed test predictions file: round trip, the same bytes for the same predictions, a
clear error for a damaged file, and when two test sets may be paired."""
import numpy as np
import pytest

from lttools.errors import LTError
from lttools.predictions import (Predictions, load_predictions, pairing_problem,
                                 save_predictions, identify_test_set)


def example(seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 40)
    identity = identify_test_set({"dataset": "toy", "raw_sha256": "abc"}, labels)
    return Predictions(labels, rng.integers(0, 5, (3, 40)), rng.integers(0, 5, (3, 40)),
                       np.array([0, 1, 2]), np.array([50, 30, 20, 10, 5]), (100, 20), identity)


def test_round_trip_and_same_bytes(tmp_path):
    p = example()
    save_predictions(tmp_path / "a.npz", p)
    save_predictions(tmp_path / "b.npz", p)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    q = load_predictions(tmp_path / "a.npz")
    for name in ("labels", "selected", "last", "seeds", "train_counts"):
        assert (getattr(q, name) == getattr(p, name)).all(), name
    assert q.thresholds == (100, 20) and q.test_set == p.test_set
    assert (q.correct() == (p.selected == p.labels)).all()
    assert not list(tmp_path.glob(".*.tmp"))


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
