import hashlib

import h5py
import numpy as np
import pytest
import torch

from fixtures import gaussian_features, write_gaussian_store
from lttools.errors import LTError
from lttools.features.store import SCHEMA_VERSION, open_store


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip(tmp_path):
    path = write_gaussian_store(tmp_path / "f.h5", views=2)
    g = gaussian_features(views=2)
    store = open_store(path, expect={"dataset": "toy"}, head_dim=g["d"])
    assert store.views == {"train": 3, "val": 1, "test": 1}
    for v in range(3):
        np.testing.assert_array_equal(store.read("train", v).numpy(), g["train"][0][v])
    np.testing.assert_array_equal(store.labels["test"], g["test"][1])
    np.testing.assert_array_equal(store.class_counts, [60, 30, 15, 8, 4])
    np.testing.assert_array_equal(store.head_weight, g["w"])
    assert store.attrs["schema_version"] == SCHEMA_VERSION and store.feature_dim == g["d"]


def test_rewrite_is_byte_identical(tmp_path):
    a = write_gaussian_store(tmp_path / "a.h5")
    b = write_gaussian_store(tmp_path / "b.h5")
    assert sha(a) == sha(b)


def test_float16_storage_halves_the_features(tmp_path):
    half = write_gaussian_store(tmp_path / "h.h5", dtype="float16")
    full = write_gaussian_store(tmp_path / "f.h5")
    with h5py.File(half) as f:
        assert f["train/features"].dtype == np.float16
    a, b = open_store(half).read("train", 1), open_store(full).read("train", 1)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-2)


def test_unknown_dtype_refused(tmp_path):
    with pytest.raises(LTError, match="features.dtype.*float32, float16"):
        write_gaussian_store(tmp_path / "f.h5", dtype="int8")
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_truncated_file_is_refused_with_file_name(tmp_path):
    path = write_gaussian_store(tmp_path / "f.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LTError, match=r"f\.h5.*(truncated|corrupt)"):
        store = open_store(path)
        store.read("train", 0)


def test_missing_store_says_how_to_make_it(tmp_path):
    with pytest.raises(LTError, match="dvc repro extract_features"):
        open_store(tmp_path / "none.h5")


def test_dim_mismatch_refused(tmp_path):
    path = write_gaussian_store(tmp_path / "f.h5")
    with pytest.raises(LTError, match="8-d but the head expects 512-d"):
        open_store(path, head_dim=512)


def test_dataset_mismatch_refused(tmp_path):
    path = write_gaussian_store(tmp_path / "f.h5")
    with pytest.raises(LTError, match="dataset = 'toy' but the params say 'cifar100'"):
        open_store(path, expect={"dataset": "cifar100"})


def _tamper(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def test_unknown_schema_version_refused(tmp_path):
    path = _tamper(write_gaussian_store(tmp_path / "f.h5"),
                   lambda f: f.attrs.__setitem__("schema_version", 99))
    with pytest.raises(LTError, match="schema version 99"):
        open_store(path)


def test_labels_out_of_range_refused(tmp_path):
    def bad(f):
        f["test/labels"][0] = 7
    path = _tamper(write_gaussian_store(tmp_path / "f.h5"), bad)
    with pytest.raises(LTError, match=r"test labels lie in \[0, 7\], outside \[0, 4\]"):
        open_store(path)


def test_counts_that_do_not_match_labels_refused(tmp_path):
    def bad(f):
        f["train/class_counts"][0] = 1
    path = _tamper(write_gaussian_store(tmp_path / "f.h5"), bad)
    with pytest.raises(LTError, match="class_counts do not match"):
        open_store(path)


def test_nan_features_refused_on_read(tmp_path):
    def bad(f):
        f["train/features"][1, 3, 2] = np.nan
    path = _tamper(write_gaussian_store(tmp_path / "f.h5"), bad)
    store = open_store(path)
    store.read("train", 0)  # view 0 is clean
    with pytest.raises(LTError, match="NaN or Inf"):
        store.read("train", 1)


def test_read_to_device_tensor(tmp_path):
    store = open_store(write_gaussian_store(tmp_path / "f.h5"))
    t = store.read("val", 0, torch.device("cpu"))
    assert t.dtype == torch.float32 and t.shape == (50, 8)
