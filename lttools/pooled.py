"""Methods over several backbone replicates (the same setting, stage 1 trained again with other
seeds, the same test images): what the pooled intervals of lttools/stats.py do not say alone.

- P(A > B): the share of paired runs (the same backbone and stage-2 seed) where A beats B, ties
  counting half (Bouthillier et al., MLSys 2021: the probability of improvement).
- Rank stability: on how many backbones a method ranks first, and in the top 3 (by its seed
  mean on that backbone).
- Noise shares: the pooled mean's variance split into the test images (shared by every
  backbone: more backbones do not reduce it), the backbones, and the stage-2 seeds within them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lttools.stats import STATISTICS, Bootstrap, replicate_variance


def probability_better(boot: Bootstrap, a, b, statistic: str = "bacc") -> float:
    g = STATISTICS.index(statistic)
    x, y = boot.results[a].on_test[:, g], boot.results[b].on_test[:, g]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def rank_shares(boot: Bootstrap, names: list, statistic: str = "bacc",
                top: int = 3) -> dict:
    """Per name: (share of backbones where it ranks first, share where it is in the top
    `top`)."""
    g = STATISTICS.index(statistic)
    means = np.stack([boot.results[n].units()[0][:, g] for n in names], 1)  # [U, M]
    order = np.argsort(-means, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(len(names))[None].repeat(len(means), 0), axis=1)
    return {n: (float(np.mean(ranks[:, j] == 0)), float(np.mean(ranks[:, j] < top)))
            for j, n in enumerate(names)}


@dataclass
class NoiseShares:
    images: float
    backbones: float
    seeds: float


def noise_shares(boot: Bootstrap, name, statistic: str = "bacc") -> NoiseShares:
    """Shares of the pooled mean's variance (they sum to 1; zeros when it has none)."""
    g = STATISTICS.index(statistic)
    r = boot.results[name]
    units, resampled = r.units()
    u = len(units)
    v_one = resampled[..., g].var(0).mean()
    v_mean = resampled[..., g].mean(1).var()
    images = max((u * v_mean - v_one) / (u - 1), 0.0) if u > 1 else v_mean
    between = float(replicate_variance(units[:, g:g + 1], resampled[..., g:g + 1])[0])
    runs = r.on_test[:, g].reshape(max(r.backbones, 1), -1)
    seeds = 0.0
    if r.backbones >= 2 and runs.shape[1] > 1:
        seeds = min(float(runs.var(1, ddof=1).mean()) / runs.size, between)
    total = images + between
    if total <= 0:
        return NoiseShares(0.0, 0.0, 0.0)
    if r.backbones < 2:  # the replicates are the seeds of one backbone
        return NoiseShares(images / total, 0.0, between / total)
    return NoiseShares(images / total, (between - seeds) / total, seeds / total)


def pair_spreads(boot: Bootstrap, names: list, statistic: str = "bacc") -> np.ndarray:
    """For every pair of methods: the standard deviation across backbones of their difference
    (each backbone's seed means), the spread a paired test over backbones works against."""
    g = STATISTICS.index(statistic)
    means = [boot.results[n].units()[0][:, g] for n in names]
    return np.array([np.std(means[i] - means[j], ddof=1) for i in range(len(names))
                     for j in range(i + 1, len(names))])


def backbones_needed(spread: float, gap: float, alpha: float = 0.05, power: float = 0.8,
                     most: int = 10_000) -> int | None:
    """The fewest backbones with which a two-sided paired t-test at `alpha` finds a true gap
    of `gap` points with probability `power`, when the per-backbone difference has standard
    deviation `spread` (noncentral t; None beyond `most`)."""
    from scipy.stats import nct, t

    if spread <= 0:
        return 2
    for b in range(2, most + 1):
        df, shift = b - 1, gap / (spread / np.sqrt(b))
        q = t.ppf(1 - alpha / 2, df)
        if nct.sf(q, df, shift) + nct.cdf(-q, df, shift) >= power:
            return b
    return None
