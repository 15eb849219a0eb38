"""Extraction from a backbone into the store: deterministic bytes, views, flipped test view."""
import hashlib

import numpy as np
import torch

from lttools.backbone.saved import SavedBackbone
from lttools.features.extract import ExtractConfig, extract_to_store
from lttools.features.store import open_store
from lttools.atomic import save_torch
from test_train import tiny_splits
from lttools.models import create_backbone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _model_and_ckpt(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("resnet32", 4, 1).eval()
    ckpt = tmp_path / "backbone.pt"
    save_torch(ckpt, {"state_dict": model.state_dict()})
    return model, ckpt


def test_extraction_is_byte_identical_and_views_are_augmented(tmp_path):
    model, ckpt = _model_and_ckpt(tmp_path)
    splits = tiny_splits()
    cfg = ExtractConfig(views=2, batch_size=16, flip_test=True)
    saved = SavedBackbone(model, "trained", {})
    extract_to_store(saved, splits, ckpt, tmp_path / "a.h5", cfg, quiet=True)
    extract_to_store(saved, splits, ckpt, tmp_path / "b.h5", cfg, quiet=True)
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.h5", "b.h5")]
    assert digest[0] == digest[1]

    store = open_store(tmp_path / "a.h5", expect={"dataset": "toy"}, head_dim=model.feature_dim)
    assert store.views == {"train": 3, "val": 2, "test": 2}  # val scored as test: flipped too
    assert store.attrs["arch"] == "resnet32" and store.attrs["views"] == 2
    assert store.attrs["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    clean, v1, v2 = (store.read("train", v) for v in range(3))
    assert not torch.allclose(clean, v1) and not torch.allclose(v1, v2)
    with torch.no_grad():
        x = torch.from_numpy(splits.images["train"][:8])
        torch.testing.assert_close(clean[:8], model.features(x), rtol=1e-5, atol=1e-5)
        xt = torch.from_numpy(splits.images["test"][:8])
        torch.testing.assert_close(store.read("test", 1)[:8], model.features(xt.flip(3)),
                                   rtol=1e-5, atol=1e-5)
        xv = torch.from_numpy(splits.images["val"][:8])
        torch.testing.assert_close(store.read("val", 1)[:8], model.features(xv.flip(3)),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(store.head_weight, model.fc.weight.detach().numpy())
    np.testing.assert_array_equal(store.class_counts, splits.class_counts)


def test_an_empty_validation_split_is_stored(tmp_path):
    """data.val_per_class: 0 (the paper's exact subset) gives an empty validation split."""
    model, ckpt = _model_and_ckpt(tmp_path)
    splits = tiny_splits()
    splits.images["val"], splits.labels["val"] = splits.images["val"][:0], splits.labels["val"][:0]
    extract_to_store(SavedBackbone(model, "trained", {}), splits, ckpt, tmp_path / "a.h5",
                     ExtractConfig(views=1), quiet=True)
    store = open_store(tmp_path / "a.h5")
    assert store.read("val", 0).shape == (0, model.feature_dim) and len(store.labels["val"]) == 0


def _stage_setup(tmp_path, n_per_class=(300, 150, 80, 40)):
    """A prepared dataset and a backbone on disk, as the extraction stage reads them."""
    import yaml
    from lttools.backbone.saved import backbone_payload
    from lttools.data.prepared import write_splits

    splits = tiny_splits(per_class=n_per_class, size=16)
    write_splits(tmp_path / "data.h5", splits)
    model, _ = _model_and_ckpt(tmp_path)
    save_torch(tmp_path / "bb.pt", backbone_payload(model, "resnet32", 4, 1, "toy"))
    params = {"features": {"views": 2, "batch_size": 32, "chunk_rows": 64, "device": "cpu"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def _extract_cmd(out, launcher=None):
    import sys
    return (launcher or [sys.executable]) + [
        str(ROOT / "stages/extract_features.py"), "--quiet", "--data", "data.h5",
        "--backbone", "bb.pt", "--out", out]


def _env():
    import os
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def test_killed_extraction_resumes_to_the_same_bytes(tmp_path):
    """kill -9 mid extraction; the next run keeps the finished chunks, computes the rest, and
    writes a store byte-identical to an uninterrupted run's."""
    import signal
    import subprocess
    import time

    _stage_setup(tmp_path)
    subprocess.run(_extract_cmd("full.h5"), cwd=tmp_path, env=_env(), check=True)
    partial = tmp_path / ".partial-killed.h5"
    proc = subprocess.Popen(_extract_cmd("killed.h5"), cwd=tmp_path, env=_env())
    while len(list(partial.glob("*.npy"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(partial.glob("*.npy")))
    assert kept >= 3 and not (tmp_path / "killed.h5").exists(), "finished before the kill"
    out = subprocess.run(_extract_cmd("killed.h5")[:-1] + ["killed.h5"], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()
              for n in ("full.h5", "killed.h5")]
    assert digest[0] == digest[1] and not partial.exists()


def test_two_processes_write_the_same_store_as_one(tmp_path):
    """torchrun with 2 processes (gloo, CPU): each extracts its slice of every split, the first
    writes the store; byte-identical to a single-process run."""
    import subprocess
    import sys

    _stage_setup(tmp_path, n_per_class=(120, 60, 30, 15))
    subprocess.run(_extract_cmd("one.h5"), cwd=tmp_path, env=_env(), check=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    out = subprocess.run(_extract_cmd("two.h5", torchrun), cwd=tmp_path, env=_env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()
