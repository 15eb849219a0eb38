"""Metric formulas on tiny cases computed by hand."""
import math

import numpy as np
import pytest
import torch

from lttools.metrics import (accuracy_summary, diagnostics, expected_calibration_error,
                             logits_magnitude, mean_std, regularized_std, reliability)

# 4 samples, 2 classes: labels 0, 0, 1, 1
Z = torch.tensor([[3.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
Y = torch.tensor([0, 0, 1, 1])


def test_loma_by_hand():
    # class 0: mean z0 on class 0 = (3+1)/2 = 2, on others (0+2)/2 = 1 -> 1
    # class 1: mean z1 on class 1 = (2+1)/2 = 1.5, on others (1+0)/2 = 0.5 -> 1
    assert logits_magnitude(Z, Y).tolist() == [1.0, 1.0]


def test_rsd_by_hand():
    # std of z0 over class 0 = std(3, 1) = 1; of z1 over class 1 = std(2, 1) = 0.5
    assert regularized_std(Z, Y).tolist() == pytest.approx([1.0, 0.5])


def test_accuracy_groups_by_hand():
    # predictions: 0, 0, 1, 0 -> class 0: 2/2, class 1: 1/2
    counts = np.array([150, 10])  # class 0 Many, class 1 Few, Medium empty
    s = accuracy_summary(Z, Y, counts)
    assert float(s["acc"]) == 75.0 and float(s["bacc"]) == 75.0
    assert float(s["many"]) == 100.0 and float(s["few"]) == 50.0
    assert "medium" not in s  # empty group: absent, never NaN


def test_balanced_accuracy_differs_from_top1_on_unbalanced_labels():
    z = torch.tensor([[1.0, 0], [1, 0], [1, 0], [1, 0]])
    y = torch.tensor([0, 0, 0, 1])
    s = accuracy_summary(z, y, np.array([3, 1]))
    assert float(s["acc"]) == 75.0 and float(s["bacc"]) == 50.0


def test_ece_by_hand():
    # two samples at confidence 0.5 + one at sigmoid(ln 3) = 0.75
    z = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(3.0), 0.0]])
    y = torch.tensor([0, 1, 1])
    # bin (0.4667, 0.5]: 2 samples, conf 0.5, acc 0.5 (argmax ties -> class 0; one correct)
    # bin (0.7333, 0.8]: 1 sample, conf 0.75, acc 0 -> |0 - 0.75| * 1/3 = 0.25
    assert float(expected_calibration_error(z, y)) == pytest.approx(25.0)
    r = reliability(z, y)
    assert float(r["count"].sum()) == 3 and int(torch.isnan(r["acc"]).sum()) == 13


def test_batched_equals_per_head():
    z = torch.randn(3, 50, 4)
    y = torch.randint(0, 4, (50,))
    batched = diagnostics(z, y)
    for h in range(3):
        single = diagnostics(z[h], y)
        for k in single:
            assert float(batched[k][h]) == pytest.approx(float(single[k]))


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
    assert mean_std([5.0]) == (5.0, 0.0)
