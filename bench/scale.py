"""Stage 2 at ImageNet-LT and iNaturalist 2018 size, on random features of those shapes: every
registered method x seeds through the batched trainer as the retrain stage runs it with the
preset's `methods:` entries (validation every epoch, test where reported, heads in
memory-sized groups), with per head-epoch time and peak memory.
Used by `bench/retrain.py --preset imagenet_lt | inat2018`."""
from __future__ import annotations

import resource
import time

from pathlib import Path

import numpy as np
import torch
import yaml

from lttools.retrain.plan import make_plan
from lttools.retrain.registry import all_methods
from lttools.retrain.records import FeatureData
from lttools.retrain.trainer import train_heads

from common import long_tailed_counts

# training rows, classes, largest / smallest class, validation and test rows per class
PRESETS = {
    "imagenet_lt": dict(n=115_846, k=1000, n_max=1280, n_min=5, val=20, test=50),
    "inat2018": dict(n=437_513, k=8142, n_max=1000, n_min=2, val=3, test=3),
}
DIM = 2048


def random_features(preset: str, rows: int | None, dtype: torch.dtype, device: str,
                    seed: int = 0) -> tuple[FeatureData, np.ndarray]:
    """Class-mean Gaussian features of the preset's shape; with `rows`, that many training rows
    sampled in proportion (the class profile kept)."""
    p = PRESETS[preset]
    counts = long_tailed_counts(p["k"], p["n"], p["n_max"], p["n_min"])
    if rows and rows < 2 * p["k"]:
        raise SystemExit(f"--rows {rows:,} is too few for {p['k']:,} classes with the preset's "
                         f"class profile; give at least {2 * p['k']:,}")
    if rows and rows < p["n"]:
        counts = long_tailed_counts(p["k"], max(rows, p["k"]), max(1, p["n_max"] * rows // p["n"]),
                                    1)
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(p["k"], DIM, generator=g)

    def draw(per_class: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.from_numpy(np.repeat(np.arange(p["k"]), per_class))
        x = torch.empty(len(y), DIM, dtype=dtype)
        for i in range(0, len(y), 65536):  # bounded float32 temporaries
            yy = y[i:i + 65536]
            x[i:i + 65536] = (means[yy] + 2 * torch.randn(len(yy), DIM, generator=g)).relu().to(dtype)
        return x.to(device), y.to(device)

    x, y = draw(counts)
    xv, yv = draw(np.full(p["k"], p["val"]))
    xt, yt = draw(np.full(p["k"], p["test"]))
    w = torch.randn(p["k"], DIM, generator=g) * 0.01
    return FeatureData(x[None], y, xv[None], yv, xt[None], yt, counts, w, torch.zeros(p["k"])), counts


def peak_memory(device: str) -> float:
    """GiB: the CUDA allocator's peak, else this process's peak resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def run(preset: str, device: str, seeds: int, epochs: int | None, rows: int | None,
        feature_dtype: str, memory_gb: float | None, methods: list[str] | None = None) -> None:
    dtype = getattr(torch, feature_dtype)
    t0 = time.perf_counter()
    data, counts = random_features(preset, rows, dtype, device)
    n, k = len(data.train_labels), len(counts)
    print(f"{preset}: {n:,} training rows x {DIM} ({feature_dtype}), {k:,} classes, "
          f"{len(data.val_labels):,} val, {len(data.test_labels):,} test; features made in "
          f"{time.perf_counter() - t0:.1f} s")
    if rows:
        print(f"  NOTE: {n:,} of the preset's {PRESETS[preset]['n']:,} training rows (sampled "
              "in proportion), on this machine")
    if epochs:
        print(f"  NOTE: every method runs {epochs} epoch(s), not its default")
    unknown = sorted(set(methods or []) - set(all_methods()))
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(all_methods()))}")
    names = sorted(methods or all_methods())
    if methods:
        print(f"  NOTE: only {', '.join(names)} of the {len(all_methods())} methods")
    total, head_epochs = 0.0, 0
    preset_methods = yaml.safe_load((Path(__file__).resolve().parents[1] / "presets" /
                                     f"{preset}.yaml").read_text())["methods"]
    for name in names:
        entry = dict(preset_methods.get(name, {}))
        if epochs and not all_methods()[name].posthoc:
            entry["epochs"] = epochs
        plan = make_plan(name, entry, {"seeds": list(range(seeds)), "device": device})
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        hist = train_heads(plan, data, device=device, quiet=True, memory_gb=memory_gb)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        he = hist.plan.num_heads * max(hist.plan.epochs, 1)
        total, head_epochs = total + seconds, head_epochs + he
        print(f"  {name:<22} {hist.plan.num_heads:>3} heads x {hist.plan.epochs:>2} epochs "
              f"{seconds:8.1f} s  {seconds / he:7.2f} s per head-epoch  peak "
              f"{peak_memory(device):6.1f} GiB")
    print(f"{len(names)} method(s) x {seeds} seeds: {total:.1f} s "
          f"({head_epochs} head-epochs, {total / head_epochs:.2f} s each)")
