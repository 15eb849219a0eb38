"""Evaluation numbers for one head or many at once.

Logits are [..., N, K] (leading dims: heads, epochs, ...), labels [N]. Returns tensors with
the leading dims kept. Accuracies are in percent.

- Top-1, balanced accuracy (mean of per-class accuracies), Many / Medium / Few (mean of the
  group's classes; groups by *training* count; an empty group is absent, never NaN).
- Logits Magnitude (LoMa) of class k: mean z_k over samples of class k minus mean z_k over
  the other samples.
- Regularized Standard Deviation (RSD) of class k: population std of z_k over the samples of
  class k, divided by LoMa_k.
- Expected calibration error (ECE): 15 equal-width confidence bins.
"""
from __future__ import annotations

import numpy as np
import torch

from lttools.data.longtail import GROUPS, class_groups

ECE_BINS = 15


def _by_class(values: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of values [..., N] per label -> [..., K] (float64)."""
    out = torch.zeros(values.shape[:-1] + (k,), dtype=torch.float64, device=values.device)
    return out.index_add_(-1, labels, values.to(torch.float64))


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[..., N, K] -> [..., K]; NaN for a class absent from `labels`."""
    k = logits.shape[-1]
    correct = (logits.argmax(-1) == labels).to(torch.float64)  # [..., N]
    n = torch.bincount(labels, minlength=k).to(torch.float64)
    return _by_class(correct, labels, k) / n


def accuracy_summary(logits: torch.Tensor, labels: torch.Tensor,
                     train_counts: np.ndarray) -> dict[str, torch.Tensor]:
    pc = per_class_accuracy(logits, labels)
    out = {"acc": 100 * (logits.argmax(-1) == labels).to(torch.float64).mean(-1),
           "bacc": 100 * pc.nanmean(-1)}
    present = torch.bincount(labels, minlength=logits.shape[-1]) > 0
    for g, classes in class_groups(train_counts).items():
        cls = [c for c in classes.tolist() if present[c]]
        if cls:
            out[g] = 100 * pc[..., cls].mean(-1)
    return out


def _class_moments(logits: torch.Tensor, labels: torch.Tensor):
    """Per class k: sample count, and sums of z_k and z_k^2 over samples of class k, and the
    sum of z_k over the other samples. O(N K) for the totals, O(N) for the in-class parts."""
    n, k = logits.shape[-2:]
    z_true = logits.gather(-1, labels.expand(logits.shape[:-1])[..., None])[..., 0]  # [..., N]
    n_in = torch.bincount(labels, minlength=k).to(torch.float64)
    sum_in = _by_class(z_true, labels, k)
    sq_in = _by_class(z_true.to(torch.float64) ** 2, labels, k)
    sum_out = logits.sum(-2, dtype=torch.float64) - sum_in
    return n_in, n - n_in, sum_in, sq_in, sum_out


def logits_magnitude(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LoMa per class, [..., N, K] -> [..., K]; NaN where a class has no (or only) samples."""
    n_in, n_out, sum_in, _, sum_out = _class_moments(logits, labels)
    return sum_in / n_in - sum_out / n_out


def regularized_std(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RSD per class, [..., N, K] -> [..., K]."""
    n_in, n_out, sum_in, sq_in, sum_out = _class_moments(logits, labels)
    mean_in = sum_in / n_in
    std_in = (sq_in / n_in - mean_in ** 2).clamp_min(0).sqrt()
    return std_in / (mean_in - sum_out / n_out)


def reliability(logits: torch.Tensor, labels: torch.Tensor,
                bins: int = ECE_BINS) -> dict[str, torch.Tensor]:
    """Per confidence bin ((b/bins, (b+1)/bins]): sample count, accuracy and mean confidence
    (NaN in an empty bin). [..., N, K] -> [..., bins] each."""
    conf, pred = torch.softmax(logits.float(), -1).max(-1)  # [..., N]
    conf = conf.to(torch.float64)
    correct = (pred == labels).to(torch.float64)
    idx = (conf * bins).ceil().long().clamp(1, bins) - 1
    shape = conf.shape[:-1] + (bins,)
    def binned(values: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(shape, dtype=torch.float64, device=conf.device)
        return zeros.scatter_add_(-1, idx, values)

    cnt, acc, cf = binned(torch.ones_like(conf)), binned(correct), binned(conf)
    return {"count": cnt, "acc": acc / cnt, "conf": cf / cnt}


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """ECE in percent, [..., N, K] -> [...]: sum over bins of |bin| / N * |acc - confidence|."""
    r = reliability(logits, labels, bins)
    gap = torch.nan_to_num((r["acc"] - r["conf"]).abs())
    return 100 * (r["count"] * gap).sum(-1) / logits.shape[-2]


def spread(per_class: torch.Tensor) -> dict[str, torch.Tensor]:
    """mean / std / min / max across classes (last dim) over finite entries."""
    v = per_class.to(torch.float64)
    finite = torch.isfinite(v)
    cnt = finite.sum(-1).clamp_min(1)
    vz = torch.where(finite, v, torch.zeros_like(v))
    mean = vz.sum(-1) / cnt
    var = (torch.where(finite, (v - mean[..., None]) ** 2, torch.zeros_like(v))).sum(-1) / cnt
    big = torch.full_like(v, float("inf"))
    return {"mean": mean, "std": var.sqrt(),
            "min": torch.where(finite, v, big).min(-1).values,
            "max": torch.where(finite, v, -big).max(-1).values}


def diagnostics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """LoMa and RSD summarised across classes, and ECE."""
    out = {f"loma_{k}": v for k, v in spread(logits_magnitude(logits, labels)).items()}
    out.update({f"rsd_{k}": v for k, v in spread(regularized_std(logits, labels)).items()})
    out["ece"] = expected_calibration_error(logits, labels)
    return out


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof 1) over seeds; std 0 for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


__all__ = ["GROUPS", "accuracy_summary", "diagnostics", "expected_calibration_error",
           "logits_magnitude", "mean_std", "per_class_accuracy", "regularized_std", "spread"]
