"""Toy feature data for stage-2 tests."""
from __future__ import annotations

import numpy as np
import torch

from fixtures import gaussian_features
from lttools.retrain.records import FeatureData


def toy_data(views: int = 1, **kw) -> FeatureData:
    g = gaussian_features(views=views, **kw)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return FeatureData(
        train=t(g["train"][0]), train_labels=t(g["train"][1]),
        val=t(g["val"][0]), val_labels=t(g["val"][1]),
        test=t(g["test"][0]), test_labels=t(g["test"][1]),
        class_counts=np.bincount(g["train"][1], minlength=g["k"]),
        head_weight=t(g["w"]), head_bias=t(g["b"]))
