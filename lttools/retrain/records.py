"""What the stage-2 trainer reads (FeatureData: the cached features as tensors on the training
device) and what it returns (History: every head's scores per epoch, its final weights and its
test-set predictions)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from lttools.data.longtail import FEW_BELOW, MANY_ABOVE
from lttools.retrain.plan import Plan


@dataclass
class FeatureData:
    """Everything stage 2 reads, as tensors on the training device."""
    train: torch.Tensor  # [V, N, D] view 0 clean, 1.. augmented
    train_labels: torch.Tensor
    val: torch.Tensor  # [T, N, D] T = 1, or 2 with the flipped view; N = 0: no validation
    val_labels: torch.Tensor
    test: torch.Tensor  # [T, N, D] as val
    test_labels: torch.Tensor
    class_counts: np.ndarray
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    group_thresholds: tuple[int, int] = (MANY_ABOVE, FEW_BELOW)  # Many above, Few below


@dataclass
class History:
    """Per head and epoch (epoch 0 = the starting head): scalar metrics and per-class arrays.
    Test entries exist at each head's best validation epoch and at the last one (NaN at the
    others), unless the trainer was asked to score the test set every epoch."""
    plan: Plan
    scalars: dict[str, dict[str, torch.Tensor]]  # split -> metric -> [H, E+1]; no "val" when
    # the store has no validation split
    per_class: dict[str, dict[str, torch.Tensor]]  # split -> {acc, loma: [H, E+1, K], rel_*: bins}
    final_params: dict[str, torch.Tensor]
    class_counts: np.ndarray  # training counts, for reporting per-class results by frequency
    # test-set class ids [H, N] of every head: "selected" at its best validation epoch (the last
    # one without validation), "last" at the last epoch; "selected_epoch" [H] says which epoch
    predictions: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

