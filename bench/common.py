"""Shared by the benchmarks: synthetic CIFAR-100-LT-shaped features, timing, machine info."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lttools.data.longtail import profile_counts  # noqa: E402
from lttools.retrain.records import FeatureData  # noqa: E402


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"torch {torch.__version__}, {gpu}, {os.cpu_count()} CPU cores, "
            f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}")


def lt_features(k: int = 100, d: int = 64, n_max: int = 500, imb: float = 100,
                val_per_class: int = 20, test_per_class: int = 100, views: int = 0,
                seed: int = 0, device: str = "cpu") -> FeatureData:
    """Gaussian class clusters with the CIFAR-100-LT IR-100 profile (10,847 training rows)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * 1.5
    counts = profile_counts(k, n_max, imb)

    def draw(per_class):
        y = torch.from_numpy(np.repeat(np.arange(k), per_class))
        return (means[y] + torch.randn(len(y), d, generator=g)).relu(), y

    x_train, y_train = draw(counts)
    train = torch.stack([x_train] + [(x_train + 0.1 * torch.randn(x_train.shape, generator=g))
                                     for _ in range(views)])
    x_val, y_val = draw([val_per_class] * k)
    x_test, y_test = draw([test_per_class] * k)
    w = torch.randn(k, d, generator=g) * 0.05
    dev = torch.device(device)
    return FeatureData(train.to(dev), y_train.to(dev), x_val[None].to(dev), y_val.to(dev),
                       x_test[None].to(dev), y_test.to(dev), counts, w, torch.zeros(k))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def peak_rss_kib() -> int:
    """Peak RSS of this process. /proc's VmHWM starts afresh at exec; ru_maxrss can carry the
    parent's peak across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def long_tailed_counts(k: int, total: int, n_max: int, n_min: int) -> np.ndarray:
    """Exponentially decaying class sizes from n_max to n_min whose sum is `total` (the decay
    is bent by a power found by bisection)."""
    c = np.arange(k) / max(k - 1, 1)
    lo, hi = 0.05, 20.0
    for _ in range(60):
        p = (lo + hi) / 2
        counts = np.maximum(n_min, np.round(n_max * (n_min / n_max) ** (c ** p))).astype(int)
        lo, hi = (lo, p) if counts.sum() > total else (p, hi)  # a larger power: larger classes
    counts[0] += total - counts.sum()
    return counts
