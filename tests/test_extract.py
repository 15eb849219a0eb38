"""Extraction from a backbone into the store: deterministic bytes, views, flipped test view."""
import hashlib

import numpy as np
import torch

from lttools.backbone.saved import SavedBackbone
from lttools.extract import ExtractConfig, extract_to_store
from lttools.features import open_store
from lttools.atomic import save_torch
from test_train import tiny_splits
from lttools.models import create_backbone


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
