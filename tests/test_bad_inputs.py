"""Inputs that used to end in a traceback: each is now an error that names the param or file
and the fix, with exit code 2, and leaves nothing half-written."""
import errno
import json
import pickle
import runpy
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from fixtures import make_cifar, write_gaussian_store
from lttools import atomic
from lttools.data import sources
from lttools.data.prepare import prepare
from lttools.data.prepared import DataConfig, write_splits
from lttools.errors import LTError
from lttools.features.store import open_store
from lttools.results import ResultPaths, write_results
from test_train import tiny_splits

ROOT = Path(__file__).resolve().parents[1]


def run_stage(cwd: Path, monkeypatch, capsys, script: str, params: dict, *args: str,
              fault=None):
    """Run a stage script in this process, after `fault(monkeypatch)` (if given) has injected
    a failure; returns its exit code and stderr."""
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    if fault is not None:
        fault(monkeypatch)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, "--quiet", *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    return exit_.value.code, capsys.readouterr().err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


DATA = {"dataset": "toy", "imb_ratio": 15.0}
RETRAIN = {"seeds": [0], "epochs": 1, "device": "cpu", "views": 0}


@pytest.mark.parametrize("section,params,needle", [
    ("backbone", {"checkpoint_every": 0},
     "backbone.checkpoint_every = 0 is out of range; valid range: [1, inf)"),
    ("backbone", {"lr": "0.01"}, "backbone.lr = '0.01' must be a number; write it without quotes"),
    ("backbone", {"flip": "no"}, "backbone.flip = 'no' must be true or false"),
    ("backbone", {"epochs": 2.5}, "backbone.epochs = 2.5 must be a whole number"),
    ("features", {"flip_test": "no"}, "features.flip_test = 'no' must be true or false"),
    ("features", {"views": "2"}, "features.views = '2' must be a whole number"),
    ("data", {"dataset": "fashion_mnist", "imb_ratio": "100", "max_per_class": 500},
     "data.imb_ratio = '100' must be a number"),
    ("data", {"dataset": "fashion_mnist", "imb_ratio": 100, "max_per_class": 500,
              "download": "no"}, "data.download = 'no' must be true or false"),
])
def test_mistyped_params_are_named(tmp_path, monkeypatch, capsys, section, params, needle):
    script = {"backbone": "train_backbone.py", "features": "extract_features.py",
              "data": "prepare_data.py"}[section]
    code, err = run_stage(tmp_path, monkeypatch, capsys, script, {section: params})
    assert code == 2 and needle in err, err
    assert "Traceback" not in err and not list(tmp_path.glob("*/*"))


@pytest.mark.parametrize("retrain,methods,needle", [
    ({"flip_test": "no"}, {"ce": {}}, "retrain.flip_test = 'no' must be true or false"),
    ({"lr": "0.01"}, {"ce": {}}, "retrain.lr = '0.01' must be a number"),
    # crt has its own lr default, so retrain.lr is not used by it: still refused, not ignored
    ({"lr": -0.1}, {"crt": {}}, "retrain.lr = -0.1 is out of range"),
    ({}, {"los": {"eps": "0.9"}}, "methods.los.eps = '0.9' must be a number"),
])
def test_mistyped_retrain_params_are_named(tmp_path, monkeypatch, capsys, retrain, methods,
                                           needle):
    write_gaussian_store(tmp_path / "f.h5")
    key = next(iter(methods))
    params = {"data": DATA, "retrain": {**RETRAIN, **retrain}, "methods": methods}
    code, err = run_stage(tmp_path, monkeypatch, capsys, "retrain.py", params, key,
                          "--features", "f.h5", "--backbone", "none", "--results-root", "out")
    assert code == 2 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_imbalance_ratio_above_max_per_class_is_refused(fashion_root):
    with pytest.raises(LTError, match=r"imb_ratio = 1000 with data.max_per_class = 50 gives the "
                                      r"smallest class .* 0 training images"):
        prepare(DataConfig("fashion_mnist", imb_ratio=1000, max_per_class=50,
                           root=str(fashion_root)))


def test_store_damaged_after_it_was_opened(tmp_path, monkeypatch):
    path = write_gaussian_store(tmp_path / "f.h5")
    store = open_store(path)

    def unreadable(self, key):
        raise OSError("Can't synchronously read data (wrong B-tree signature)")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", unreadable)
    with pytest.raises(LTError, match=r"f\.h5: reading train features \(view 1\) failed .*"
                                      r"damaged or replaced after it was opened"):
        store.read("train", 1)
    monkeypatch.undo()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated since it was opened
    with pytest.raises(LTError, match=r"f\.h5 cannot be opened as HDF5 .* truncated or corrupt"):
        store.read("train", 1)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_the_store(tmp_path, monkeypatch, capsys, fashion_root):
    """extract_features with a full disk: exit 2, the message says so, no file is left."""
    from lttools.atomic import save_torch
    from lttools.backbone.config import BackboneConfig
    from lttools.backbone.saved import backbone_payload
    from lttools.backbone.train import train_backbone

    splits = tiny_splits(size=12)
    write_splits(tmp_path / "data.h5", splits)
    model = train_backbone(splits, BackboneConfig(epochs=1, batch_size=16), "cpu", quiet=True).model
    save_torch(tmp_path / "bb.pt", backbone_payload(model, "resnet32", 4, 1, "toy"))
    code, err = run_stage(tmp_path, monkeypatch, capsys, "extract_features.py",
                          {"features": {"views": 1, "device": "cpu"}}, "--data", "data.h5",
                          "--backbone", "bb.pt", "--out", "feat/f.h5",
                          fault=lambda m: m.setattr(h5py.Dataset, "__setitem__", _disk_full))
    assert code == 2 and "no space left on the device while writing feat/f.h5" in err, err
    assert "free some space" in err and "Traceback" not in err
    assert not (tmp_path / "feat" / "f.h5").exists() and not leftovers(tmp_path)


def test_disk_full_while_writing_a_checkpoint(monkeypatch, dvc_dir, capsys):
    write_splits(dvc_dir / "data.h5", tiny_splits(size=12))
    params = {"backbone": {"epochs": 2, "batch_size": 16, "device": "cpu", "checkpoint_every": 1}}
    code, err = run_stage(dvc_dir, monkeypatch, capsys, "train_backbone.py", params,
                          "--data", "data.h5", "--out", "bb.pt", "--checkpoint", "bb.ckpt",
                          "--curves", "log",
                          fault=lambda m: m.setattr(Path, "write_bytes", _disk_full))
    assert code == 2 and "no space left on the device while writing bb.ckpt" in err, err
    assert not (dvc_dir / "bb.ckpt").exists() and not (dvc_dir / "bb.pt").exists()
    assert not (dvc_dir / "log").exists() and not leftovers(dvc_dir)


def test_disk_full_while_writing_metrics(tmp_path, monkeypatch, capsys):
    write_gaussian_store(tmp_path / "f.h5")
    params = {"data": DATA, "retrain": RETRAIN, "methods": {"ce": {}}}
    code, err = run_stage(tmp_path, monkeypatch, capsys, "retrain.py", params, "ce",
                          "--features", "f.h5", "--backbone", "none", "--results-root", "out",
                          fault=lambda m: m.setattr(Path, "write_text", _disk_full))
    assert code == 2 and "no space left on the device while writing out/" in err, err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_ctrl_c_in_retrain_says_what_happens_and_writes_nothing(tmp_path, monkeypatch, capsys):
    write_gaussian_store(tmp_path / "f.h5")
    import lttools.retrain.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train_replicates", interrupted)
    params = {"data": DATA, "retrain": RETRAIN, "methods": {"ce": {}}}
    code, err = run_stage(tmp_path, monkeypatch, capsys, "retrain.py", params, "ce",
                          "--features", "f.h5", "--backbone", "none", "--results-root", "out")
    assert code == 130
    assert "results were not written" in err and "trains it again from the start" in err
    assert "checkpoints are kept" not in err and not (tmp_path / "out").exists()


def test_results_are_written_as_one_set(tmp_path, monkeypatch):
    from lttools.predictions import Predictions

    paths = ResultPaths(tmp_path)
    old = {"epochs": [{"epoch": 0}], "per_class": [{"class": 0}], "method": "ce"}
    labels = np.arange(4)
    made = lambda pred: Predictions.from_class_ids(labels, pred, pred, np.array([0]),  # noqa
                                                   np.ones(4, int), (100, 20), {})
    write_results(paths, "ce", {"test_acc_mean": 1.0}, old, made(np.array([[0, 1, 2, 3]])))
    kept = paths.predictions("ce").read_bytes()
    calls = []
    real = Path.write_text

    def fail_on_third(self, text, *a, **k):
        calls.append(self)
        if len(calls) == 3:
            raise RuntimeError("killed mid-set")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", fail_on_third)
    new = {"epochs": [{"epoch": 5}], "per_class": [{"class": 9}], "method": "ce"}
    with pytest.raises(RuntimeError):
        write_results(paths, "ce", {"test_acc_mean": 2.0}, new, made(np.array([[3, 2, 1, 0]])))
    monkeypatch.undo()
    assert paths.predictions("ce").read_bytes() == kept  # the old predictions, with the old set
    assert json.loads(paths.metrics("ce").read_text()) == {"test_acc_mean": 1.0}
    assert json.loads(paths.epochs("ce").read_text()) == [{"epoch": 0}]  # old plots kept too
    assert not leftovers(tmp_path)


def test_a_cifar_pickle_that_would_run_a_command_is_refused(tmp_path):
    make_cifar(tmp_path, "cifar100", per_class=2, test_per_class=1)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "cifar-100-python" / "train", "wb") as f:
        pickle.dump({"data": Payload(), "fine_labels": [0]}, f, protocol=2)
    with pytest.raises(LTError, match=r"train is not a readable CIFAR python pickle: refusing to "
                                      r"load the global (posix|os)\.system"):
        sources.load_raw("cifar100", tmp_path)
    assert not marker.exists()


def test_official_cifar_layout_still_loads_with_the_safe_unpickler(tmp_path):
    """The real files are Python 2 pickles of dicts with bytes, lists and numpy arrays."""
    make_cifar(tmp_path, "cifar10", per_class=3, test_per_class=1)
    d = tmp_path / "cifar-10-batches-py"
    arr = np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072)
    with open(d / "data_batch_1", "wb") as f:  # a numpy array pickled as numpy itself does
        pickle.dump({b"batch_label": b"x", "data": arr, "labels": [0, 1, 2],
                     "filenames": [b"a.png"]}, f, protocol=2)
    raw = sources.load_raw("cifar10", tmp_path)
    assert raw.train_x.dtype == np.uint8 and len(raw.sha256) == 6
    np.testing.assert_array_equal(raw.train_x[:3].reshape(3, -1), arr)


def test_prepare_records_the_raw_files_it_read(fashion_root):
    splits = prepare(DataConfig("fashion_mnist", imb_ratio=10, max_per_class=30,
                                root=str(fashion_root), val_per_class=5))
    hashes = json.loads(splits.meta["raw_sha256"])
    assert sorted(hashes) == sorted(sources.FASHION_FILES.values())
    assert splits.source == str(fashion_root)
    (fashion_root / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (fashion_root / "t10k-labels-idx1-ubyte.gz").read_bytes())  # same bytes: same record
    again = prepare(DataConfig("fashion_mnist", imb_ratio=10, max_per_class=30,
                               root=str(fashion_root), val_per_class=5))
    assert again.meta["raw_sha256"] == splits.meta["raw_sha256"]


def test_is_disk_full_recognises_hdf5_style_errors():
    assert atomic.is_disk_full(OSError(errno.ENOSPC, "x"))
    assert atomic.is_disk_full(OSError("Can't write data (file write failed: errno = 28)"))
    assert not atomic.is_disk_full(OSError(errno.EACCES, "denied"))
    assert not atomic.is_disk_full(torch.zeros(1))  # type: ignore[arg-type]
