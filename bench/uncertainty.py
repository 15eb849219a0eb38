"""Intervals and paired tests: what they cost, how wide they are, and how well calibrated.

    python bench/uncertainty.py                      # all four parts
    python bench/uncertainty.py --parts speed        # speed only

- speed: the report's statistics (16 methods x 3 seeds, 2000 resamples, every method against
  the best and against ce) at the default size (10,000 test images, 10 classes) and at
  ImageNet-LT's (50,000, 1,000 classes), on synthetic predictions; the reference path draws
  each resample's image indices and scores it (the textbook loop), timed on a share of the
  resamples in the same run and scaled up.
- widths: the default run's intervals (metrics/predictions/*.npz), with and without the seeds,
  at its 1,000 test images per class and on a stratified subsample of 100 per class.
- calibration: the simulation of tests/test_stats.py with more repetitions.
- backbones: backbone replicates (B = 3 and 5): the simulation's false-positive rate, coverage
  and power for a 2-point gap, and the pooled statistics' cost (`lttools compare --pool`:
  16 methods x B backbones x 3 seeds) at the default size and at ImageNet-LT's with B = 5,
  against the same results scored as if from one backbone (B x 3 seeds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lttools.predictions import load_predictions
from lttools.report.significance import significance
from lttools.stats import Settings, bootstrap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def synthetic(n: int, k: int, methods: int, seeds: int, rng) -> tuple[dict, np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(k), n // k)
    counts = np.maximum(5, (1280 * 0.01 ** (np.arange(k) / (k - 1))).astype(int))
    correct = {f"m{i}": rng.random((seeds, len(labels))) < rng.uniform(0.5, 0.8)
               for i in range(methods)}
    return correct, labels, counts


def reference_loop(correct: dict, labels: np.ndarray, resamples: int, rng) -> None:
    """Per resample: draw each class's images, then every method and seed's balanced
    accuracy on them."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(resamples):
        idx = [rng.choice(ix, len(ix)) for ix in by_class]
        for c in correct.values():
            np.mean([c[:, ix].mean(1) for ix in idx], 0)


def speed(n: int, k: int) -> None:
    rng = np.random.default_rng(0)
    correct, labels, counts = synthetic(n, k, 16, 3, rng)
    from lttools.predictions import Predictions

    preds = {name: Predictions(labels, c, c, np.arange(3), counts, (100, 20), {})
             for name, c in correct.items()}  # labels already in class order
    order = list(preds)
    t0 = time.perf_counter()
    significance(preds, order, Settings(resamples=2000), reference="m15")
    ours = time.perf_counter() - t0
    share = 20
    t0 = time.perf_counter()
    reference_loop(correct, labels, share, rng)
    ref = (time.perf_counter() - t0) * 2000 / share
    print(f"{n:,} test images, {k} classes, 16 methods x 3 seeds, 2000 resamples: "
          f"{ours:.2f} s (reference loop {ref:.1f} s, scaled from {share} resamples; "
          f"{ref / ours:.0f}x)")


def widths(metrics_root: Path) -> None:
    files = sorted((metrics_root / "predictions").glob("*.npz"))
    if not files:
        print(f"no predictions under {metrics_root}; run `dvc repro` first")
        return
    preds = {f.stem: load_predictions(f) for f in files}
    labels = next(iter(preds.values())).labels
    rng = np.random.default_rng(0)
    sub = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 100, replace=False)
                                  for c in np.unique(labels)]))
    print(f"{'method':<22}{'half-width':>12}{'seeds ignored':>15}{'100/class':>12}"
          f"{'seeds share':>13}")
    for name, p in preds.items():
        row = []
        for subset, mode in ((None, "include"), (None, "ignore"), (sub, "include")):
            c = p.correct() if subset is None else p.correct()[:, subset]
            y = p.labels if subset is None else p.labels[subset]
            boot = bootstrap({name: c}, y, p.train_counts, p.thresholds, Settings(seeds=mode))
            lo, hi = boot.interval(name)
            row.append((hi - lo) / 2)
        share = 1 - (row[1] / row[0]) ** 2
        print(f"{name:<22}{row[0]:>12.2f}{row[1]:>15.2f}{row[2]:>12.2f}{share:>12.0%}")


def calibration(reps: int) -> None:
    from test_stats import calibration as simulate

    for jitter in (0.0, 0.5):
        for seeds in ("include", "ignore"):
            fpr, cover, _ = simulate(reps, seeds, jitter=jitter)
            print(f"seed-by-image jitter {jitter}, seeds {seeds}: false-positive rate {fpr:.1%}, "
                  f"coverage {cover:.1%} ({reps} repetitions)")
    power, cover_a, cover_b = simulate(reps, "include", gap=0.04)
    print(f"a 4-point gap: found in {power:.1%}, coverage {cover_a:.1%} / {cover_b:.1%}")


def backbones(reps: int) -> None:
    from test_stats import backbone_calibration

    for b in (3, 5):
        fpr, cover_a, cover_b = backbone_calibration(reps, b, seed=b)
        power, _, _ = backbone_calibration(reps // 2, b, gap=0.02, seed=4)
        flat, _, _ = backbone_calibration(reps // 2, b, seed=1, flatten=True)
        print(f"B = {b} backbones x 3 seeds: false-positive rate {fpr:.1%}, coverage "
              f"{cover_a:.1%} / {cover_b:.1%} ({reps} repetitions); a 2-point gap found in "
              f"{power:.1%}; backbones taken for seeds: false-positive rate {flat:.1%}")


def pooled_speed(n: int, k: int, b: int) -> None:
    from lttools.compare.pool import pool
    from lttools.compare.revisions import MethodAt, Revision
    from lttools.predictions import Predictions

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), n // k)
    counts = np.maximum(5, (1280 * 0.01 ** (np.arange(k) / (k - 1))).astype(int))
    revs = []
    for i in range(b):
        rev = Revision(f"bb{i}", f"{i:040d}", "", {})
        for m in range(16):
            c = rng.random((3, len(labels))) < rng.uniform(0.5, 0.8)
            rev.methods["ce" if m == 15 else f"m{m}"] = MethodAt(
                {}, Predictions(labels, c, c, np.arange(3), counts, (100, 20), {}))
        revs.append(rev)
    t0 = time.perf_counter()
    pool(revs, Settings(resamples=2000))
    ours = time.perf_counter() - t0
    flat = {k: np.concatenate([r.methods[k].predictions.correct() for r in revs])
            for k in revs[0].methods}
    t0 = time.perf_counter()
    significance({k: Predictions(labels, c, c, np.arange(3 * b), counts, (100, 20), {})
                  for k, c in flat.items()}, list(flat), Settings(resamples=2000), reference="ce")
    one = time.perf_counter() - t0
    print(f"pooled, {n:,} test images, {k} classes, 16 methods x {b} backbones x 3 seeds, 2000 "
          f"resamples: {ours:.2f} s (the same runs as one backbone's {3 * b} seeds: {one:.2f} s; "
          f"{ours / one:.2f}x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--parts", nargs="*", default=["speed", "widths", "calibration", "backbones"])
    p.add_argument("--metrics-root", type=Path, default=ROOT / "metrics")
    p.add_argument("--reps", type=int, default=1000)
    args = p.parse_args()
    if "speed" in args.parts:
        speed(10_000, 10)
        speed(50_000, 1000)
    if "widths" in args.parts:
        widths(args.metrics_root)
    if "calibration" in args.parts:
        calibration(args.reps)
    if "backbones" in args.parts:
        backbones(args.reps)
        pooled_speed(10_000, 10, 3)
        pooled_speed(50_000, 1000, 5)


if __name__ == "__main__":
    main()
