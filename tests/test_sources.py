import numpy as np
import pytest

from fixtures import make_cifar
from lttools.data import sources
from lttools.data.prepare import prepare
from lttools.data.prepared import DataConfig, read_splits, write_splits
from lttools.errors import LTError


def test_fashion_mnist_reads_idx_files(fashion_root):
    raw = sources.load_raw("fashion_mnist", fashion_root)
    assert raw.train_x.shape == (600, 1, 28, 28) and raw.train_x.dtype == np.uint8
    assert raw.test_x.shape == (200, 1, 28, 28)
    assert raw.train_y[:10].tolist() == list(range(10)) and raw.num_classes == 10


def test_fashion_mnist_missing_names_all_three_fixes(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(LTError) as err:
        sources.load_raw("fashion_mnist", tmp_path / "empty", download=False)
    msg = str(err.value)
    assert "data.root" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "data.download" in msg


def test_truncated_idx_file_is_refused(fashion_root):
    f = fashion_root / "train-images-idx3-ubyte.gz"
    import gzip
    data = gzip.open(f).read()
    with gzip.open(f, "wb") as out:
        out.write(data[:1000])
    with pytest.raises(LTError, match="truncated"):
        sources.load_raw("fashion_mnist", fashion_root)


@pytest.mark.parametrize("name,k", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles(tmp_path, name, k):
    make_cifar(tmp_path, name)
    raw = sources.load_raw(name, tmp_path)
    assert raw.num_classes == k
    assert raw.train_x.shape == (30 * k, 3, 32, 32) and raw.test_x.shape == (5 * k, 3, 32, 32)
    assert np.bincount(raw.train_y).tolist() == [30] * k


def test_cifar_missing_says_where_and_how(tmp_path):
    with pytest.raises(LTError, match="cifar-100-python.*data.download"):
        sources.load_raw("cifar100", tmp_path)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(LTError, match="cifar10, cifar100, fashion_mnist"):
        sources.load_raw("imagenet")


def test_prepared_round_trip_and_disjoint_splits(tmp_path):
    make_cifar(tmp_path, "cifar10", per_class=40)
    splits = prepare(DataConfig("cifar10", imb_ratio=10, max_per_class=30, root=str(tmp_path),
                                val_per_class=5))
    assert splits.class_counts[0] == 30 and splits.class_counts[-1] == 3
    assert np.bincount(splits.labels["val"]).tolist() == [5] * 10
    # validation images are not among the training images (all synthetic images are distinct)
    train_rows = {x.tobytes() for x in splits.images["train"]}
    assert not any(x.tobytes() in train_rows for x in splits.images["val"])
    assert not any(x.tobytes() in train_rows for x in splits.images["test"])
    write_splits(tmp_path / "p.h5", splits)
    back = read_splits(tmp_path / "p.h5")
    assert back.meta == splits.meta and back.num_classes == 10
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(back.images[s], splits.images[s])
        np.testing.assert_array_equal(back.labels[s], splits.labels[s])
