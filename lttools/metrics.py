"""Evaluation numbers for one head or many at once, from statistics accumulated over chunks of
samples, so that memory does not grow with the number of samples.

Logits are [..., n, K] (leading dims: heads, epochs, ...), labels [n]. Results keep the leading
dims. Accuracies are in percent.

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

from lttools.data.longtail import FEW_BELOW, GROUPS, MANY_ABOVE, class_groups

ECE_BINS = 15


def _row_sum(z: torch.Tensor, block: int = 256) -> torch.Tensor:
    """[..., N, K] -> [..., K] summed in float64, `block` rows at a time (at once, the float64
    copy of z would be as large as z twice over, and mapped afresh on every call)."""
    out = torch.zeros(z.shape[:-2] + z.shape[-1:], dtype=torch.float64, device=z.device)
    for i in range(0, z.shape[-2], block):
        out += z[..., i:i + block, :].sum(-2, dtype=torch.float64)
    return out


class LogitStats:
    """Per class and per confidence bin sums over every sample seen by `update`: counts,
    correct predictions, the true-class logit and its square, every class's logit summed over
    all samples; and the calibration bins."""

    def __init__(self, lead: tuple[int, ...], k: int, device: torch.device | str = "cpu",
                 bins: int = ECE_BINS):
        z = dict(dtype=torch.float64, device=device)
        self.k, self.bins, self.n = k, bins, 0
        self.n_in = torch.zeros(k, **z)
        self.correct_in = torch.zeros(*lead, k, **z)
        self.correct = torch.zeros(lead, **z)
        self.sum_in = torch.zeros(*lead, k, **z)
        self.sq_in = torch.zeros(*lead, k, **z)
        self.sum_all = torch.zeros(*lead, k, **z)
        self.bin_count = torch.zeros(*lead, bins, **z)
        self.bin_correct = torch.zeros(*lead, bins, **z)
        self.bin_conf = torch.zeros(*lead, bins, **z)

    @classmethod
    def of(cls, logits: torch.Tensor, labels: torch.Tensor) -> "LogitStats":
        stats = cls(tuple(logits.shape[:-2]), logits.shape[-1], logits.device)
        stats.update(logits, labels)
        return stats

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(logits.device)
        k = self.k

        def by_class(values: torch.Tensor) -> torch.Tensor:  # [..., n] -> [..., K]
            out = torch.zeros(values.shape[:-1] + (k,), dtype=torch.float64, device=values.device)
            return out.index_add_(-1, labels, values.to(torch.float64))

        self.n += logits.shape[-2]
        self.n_in += torch.bincount(labels, minlength=k).to(torch.float64)
        probs = torch.softmax(logits.float(), -1)
        conf, pred = probs.max(-1)
        hit = (pred == labels).to(torch.float64)
        self.correct += hit.sum(-1)
        self.correct_in += by_class(hit)
        z_true = logits.gather(-1, labels.expand(logits.shape[:-1])[..., None])[..., 0]
        self.sum_in += by_class(z_true)
        self.sq_in += by_class(z_true.to(torch.float64) ** 2)
        self.sum_all += _row_sum(logits)
        conf = conf.to(torch.float64)
        idx = (conf * self.bins).ceil().long().clamp(1, self.bins) - 1
        self.bin_count.scatter_add_(-1, idx, torch.ones_like(conf))
        self.bin_correct.scatter_add_(-1, idx, hit)
        self.bin_conf.scatter_add_(-1, idx, conf)

    def per_class_accuracy(self) -> torch.Tensor:
        """[..., K] in [0, 1]; NaN for a class absent from the labels."""
        return self.correct_in / self.n_in

    def summary(self, train_counts: np.ndarray, many_above: int = MANY_ABOVE,
                few_below: int = FEW_BELOW) -> dict[str, torch.Tensor]:
        pc = self.per_class_accuracy()
        out = {"acc": 100 * self.correct / self.n, "bacc": 100 * pc.nanmean(-1)}
        present = self.n_in > 0
        for g, classes in class_groups(train_counts, many_above, few_below).items():
            cls = [c for c in classes.tolist() if c < self.k and present[c]]
            if cls:
                out[g] = 100 * pc[..., cls].mean(-1)
        return out

    def loma(self) -> torch.Tensor:
        """[..., K]; NaN where a class has no (or only) samples."""
        return self.sum_in / self.n_in - (self.sum_all - self.sum_in) / (self.n - self.n_in)

    def rsd(self) -> torch.Tensor:
        mean_in = self.sum_in / self.n_in
        std_in = (self.sq_in / self.n_in - mean_in ** 2).clamp_min(0).sqrt()
        return std_in / self.loma()

    def reliability(self) -> dict[str, torch.Tensor]:
        """Per confidence bin ((b/bins, (b+1)/bins]): sample count, accuracy and mean
        confidence (NaN in an empty bin)."""
        return {"count": self.bin_count, "acc": self.bin_correct / self.bin_count,
                "conf": self.bin_conf / self.bin_count}

    def ece(self) -> torch.Tensor:
        """In percent: sum over bins of |bin| / n * |accuracy - confidence|."""
        r = self.reliability()
        gap = torch.nan_to_num((r["acc"] - r["conf"]).abs())
        return 100 * (r["count"] * gap).sum(-1) / self.n

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """LoMa and RSD summarised across classes, and ECE."""
        out = {f"loma_{k}": v for k, v in spread(self.loma()).items()}
        out.update({f"rsd_{k}": v for k, v in spread(self.rsd()).items()})
        out["ece"] = self.ece()
        return out


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[..., N, K] -> [..., K]; NaN for a class absent from `labels`."""
    return LogitStats.of(logits, labels).per_class_accuracy()


def accuracy_summary(logits: torch.Tensor, labels: torch.Tensor, train_counts: np.ndarray,
                     many_above: int = MANY_ABOVE,
                     few_below: int = FEW_BELOW) -> dict[str, torch.Tensor]:
    return LogitStats.of(logits, labels).summary(train_counts, many_above, few_below)


def logits_magnitude(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LoMa per class, [..., N, K] -> [..., K]; NaN where a class has no (or only) samples."""
    return LogitStats.of(logits, labels).loma()


def regularized_std(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RSD per class, [..., N, K] -> [..., K]."""
    return LogitStats.of(logits, labels).rsd()


def reliability(logits: torch.Tensor, labels: torch.Tensor,
                bins: int = ECE_BINS) -> dict[str, torch.Tensor]:
    stats = LogitStats(tuple(logits.shape[:-2]), logits.shape[-1], logits.device, bins)
    stats.update(logits, labels)
    return stats.reliability()


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """ECE in percent, [..., N, K] -> [...]."""
    stats = LogitStats(tuple(logits.shape[:-2]), logits.shape[-1], logits.device, bins)
    stats.update(logits, labels)
    return stats.ece()


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
    return LogitStats.of(logits, labels).diagnostics()


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof 1) over seeds; std 0 for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


__all__ = ["GROUPS", "LogitStats", "accuracy_summary", "diagnostics",
           "expected_calibration_error", "logits_magnitude", "mean_std", "per_class_accuracy",
           "regularized_std", "spread"]
