"""How sure is a number, and a difference? Two sources of noise in a re-training result:
the finite test sample, and the training seeds.

- Test images: a bootstrap that resamples the test images within each class (class sizes stay
  fixed, as balanced accuracy needs). Balanced accuracy on a resample is linear in the images'
  resample counts w: bacc = sum_i w_i c_i / (K n_{y_i}), c_i = 1 when image i is right, so one
  matrix product scores every resample of every result, seed and class group (all, Many,
  Medium, Few). Results scored on the same resamples are paired: a difference keeps only the
  noise that does not cancel on the same images.
- Seeds: their variance s^2 / S around the seed mean, with S - 1 degrees of freedom; with 3
  seeds it is itself uncertain, so intervals and tests use Student's t with the
  Welch-Satterthwaite degrees of freedom of image + seed variance. A seed shifts whole classes
  (one head favours some classes): a bootstrap over images alone misses that and, in the
  simulation of tests/test_stats.py, rejects a true null about a third of the time.

A result's interval is bounded, and never narrower than the test images allow. A class right (or
wrong) on every image in every seed has no image variance in the bootstrap, so each class's rate
gets at least the variance of Jeffreys' estimate p~(1 - p~) / (n + 1), p~ = (right + 1/2) / (n + 1)
(the Beta(1/2, 1/2) prior that Brown, Cai & DasGupta 2001 recommend for binomial rates); the
interval is Wilson's score interval at the effective sample size that gives the statistic its
standard error (the design-effect form of Korn & Graubard 1998), with Student's t for the
quantile: inside [0, 100] by construction, asymmetric near the bounds, and est +- t se in the
middle (within a few hundredths of a point at the default size). Simulated with 30 test images
per class (tests/test_stats.py): coverage stays near 95 % with class accuracies up to 100 %,
where est +- t se falls to 63 % for Few and gives zero-width intervals. Differences stay
est +- t se (a paired difference has no bound problem).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from lttools.data.longtail import GROUPS, class_groups
from lttools.errors import LTError

STATISTICS = ("bacc", *GROUPS)  # balanced accuracy over all classes, then each group's
CORRECTIONS = ("holm", "bh")  # Holm: family-wise error; Benjamini-Hochberg: false discovery rate
SEED_MODES = ("include", "ignore")  # ignore: test images only (too optimistic; for comparison)
WEIGHT_BLOCK = 2 ** 20  # resample counts held at once (resamples x images): cache-sized


@dataclass(frozen=True)
class Settings:
    resamples: int = 2000
    level: float = 0.95
    seed: int = 0
    seeds: str = "include"
    correction: str = "holm"
    margin: float = 0.5  # practical equivalence, percentage points (0: not judged)

    def __post_init__(self) -> None:
        if not isinstance(self.margin, (int, float)) or isinstance(self.margin, bool) or \
                not 0 <= self.margin < 100:
            raise LTError(f"uncertainty.margin = {self.margin!r} must be a number of percentage "
                          "points in [0, 100): differences inside +-margin are called "
                          "equivalent (0.5 by default; 0 turns equivalence off)")
        if not isinstance(self.resamples, int) or isinstance(self.resamples, bool) or \
                not 100 <= self.resamples <= 1_000_000:
            raise LTError(f"uncertainty.resamples = {self.resamples!r} must be a whole number "
                          "from 100 to 1,000,000 (2000 is plenty for 95 % intervals)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise LTError(f"uncertainty.seed = {self.seed!r} must be a whole number >= 0")
        if not isinstance(self.level, (int, float)) or not 0.5 <= self.level < 1:
            raise LTError(f"uncertainty.level = {self.level!r} must be in [0.5, 1) (0.95: 95 % "
                          "intervals, tests at alpha 0.05)")
        if self.seeds not in SEED_MODES:
            raise LTError(f"uncertainty.seeds = {self.seeds!r}: choose one of "
                          f"{', '.join(SEED_MODES)}")
        if self.correction not in CORRECTIONS:
            raise LTError(f"uncertainty.correction = {self.correction!r}: choose one of "
                          f"{', '.join(CORRECTIONS)} (holm: family-wise error rate; bh: "
                          "Benjamini-Hochberg, false discovery rate)")

    @property
    def alpha(self) -> float:
        return 1 - self.level

    @property
    def correction_name(self) -> str:
        return {"holm": "Holm", "bh": "Benjamini-Hochberg"}[self.correction]

    @classmethod
    def from_params(cls, section: dict | None) -> "Settings":
        section = dict(section or {})
        known = ("resamples", "level", "seed", "seeds", "correction", "margin")
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise LTError(f"unknown key(s) under `uncertainty:` in params.yaml: {', '.join(unknown)}"
                          f"; known: {', '.join(known)}")
        return cls(**section)

    def describe(self) -> str:
        seeds = ("plus the variance between training seeds (Student's t, Welch-Satterthwaite "
                 "degrees of freedom)" if self.seeds == "include" else "seeds ignored")
        within = (f"; 'equivalent': the difference's {1 - 2 * self.alpha:.0%} interval lies "
                  f"within ±{self.margin:g} points (two one-sided tests)" if self.margin > 0
                  else "")
        return (f"{self.level:.0%} intervals and paired tests: test images resampled within each "
                f"class ({self.resamples} bootstrap resamples, seed {self.seed}, the same for "
                f"every method), {seeds}{within}")


def group_weights(labels: np.ndarray, train_counts: np.ndarray,
                  thresholds: tuple[int, int]) -> np.ndarray:
    """[G, N]: image i's share in each statistic of STATISTICS, 1 / (K_g n_{y_i}) for the K_g
    test classes of the group (an empty group's row is all zero)."""
    k = len(train_counts)
    n_test = np.bincount(labels, minlength=k)
    present = n_test > 0
    groups = class_groups(np.asarray(train_counts), *thresholds)
    members = [present] + [present & np.isin(np.arange(k), groups[g]) for g in GROUPS]
    out = np.zeros((len(members), len(labels)))
    for row, classes in zip(out, members):
        if classes.any():
            share = np.where(classes, 1.0 / np.maximum(n_test, 1) / classes.sum(), 0.0)
            row[:] = share[labels]
    return out


def image_resamples(labels: np.ndarray, resamples: int, seed: int):
    """Blocks of [b, N] resample counts, the images in class order (`class_order(labels)`):
    each class's test images drawn with replacement as many times as the class has images.
    The same seed gives the same resamples in any block size, so every method (and every
    revision) is scored on the same ones."""
    n = len(labels)
    order = class_order(labels)
    sizes = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot_start, slot_size = starts[labels[order]], sizes[labels[order]].astype(np.float64)
    rng = np.random.default_rng([seed, 0])
    block = max(1, WEIGHT_BLOCK // max(n, 1))
    for b0 in range(0, resamples, block):
        b = min(block, resamples - b0)
        pick = (rng.random((b, n)) * slot_size).astype(np.int64)
        pick += slot_start + (np.arange(b) * n)[:, None]
        yield np.bincount(pick.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def class_order(labels: np.ndarray) -> np.ndarray:
    """The images sorted by class (stable), the order of `image_resamples`' columns."""
    return np.argsort(labels, kind="stable")


@dataclass
class Result:
    """One result's scores (a method, or a method in one revision), percent, per statistic G:
    per run on the test set as it is [R, G], and on every image resample [B, R, G], the runs
    backbone-major (R = backbones x seeds); each class's images right, run mean [K]."""
    on_test: np.ndarray
    resampled: np.ndarray
    class_right: np.ndarray
    backbones: int = 1

    @property
    def estimate(self) -> np.ndarray:
        return self.on_test.mean(0)

    def units(self) -> tuple[np.ndarray, np.ndarray]:
        """The independent replicates, [U, G] on the test set and [B, U, G] on the resamples:
        the backbones' seed means when there are several backbones (a backbone's seeds share
        its features: they are not independent of each other), else the seeds."""
        if self.backbones < 2:
            return self.on_test, self.resampled
        u = self.backbones
        return (self.on_test.reshape(u, -1, self.on_test.shape[-1]).mean(1),
                self.resampled.reshape(len(self.resampled), u, -1,
                                       self.resampled.shape[-1]).mean(2))


def replicate_variance(on_test: np.ndarray, resampled: np.ndarray) -> np.ndarray:
    """[G]: what U replicates ([U, G], [B, U, G] on the resamples) add to the variance of their
    mean, s^2 / U (unbiased), less each replicate's image-level disagreement, which the image
    resamples already hold: (V_1 - V_U) / (U - 1), V_1 the image variance of one replicate,
    V_U of their mean."""
    u = on_test.shape[0]
    if u < 2:
        return np.zeros(on_test.shape[1])
    v_one = resampled.var(0).mean(0)
    v_mean = resampled.mean(1).var(0)
    return np.maximum(on_test.var(0, ddof=1) / u - np.maximum(v_one - v_mean, 0) / (u - 1), 0)


@dataclass
class Bootstrap:
    """Results scored on the same image resamples, with their intervals and paired tests."""
    results: dict
    available: np.ndarray  # [G] bool: the group has test classes
    settings: Settings
    class_sizes: np.ndarray  # [K] test images per class
    class_shares: np.ndarray  # [G, K] a class's weight in each statistic (1 / K_g, or 0)

    def _stat(self, statistic: str) -> int:
        return STATISTICS.index(statistic)

    def estimate(self, name, statistic: str = "bacc") -> float:
        return float(self.results[name].estimate[self._stat(statistic)])

    def _spread(self, names: list, signs: list[float], g: int) -> tuple[float, float]:
        """Standard error and effective degrees of freedom of sum(sign * run mean): the image
        part from the shared resamples (paired). With one backbone, the seed parts each with
        S - 1 degrees of freedom (Welch-Satterthwaite). With B backbones, shared by all the
        results, the combination is formed backbone by backbone (paired: a backbone moves every
        method it feeds) and its spread across backbones has B - 1 degrees of freedom."""
        rs = [self.results[n] for n in names]
        image = np.var(sum(sign * r.resampled.mean(1)[:, g] for sign, r in zip(signs, rs)))
        include = self.settings.seeds == "include"
        if rs[0].backbones >= 2 and all(r.backbones == rs[0].backbones for r in rs):
            unit = [r.units() for r in rs]
            combined = (sum(sign * t[:, g:g + 1] for sign, (t, _) in zip(signs, unit)),
                        sum(sign * b[..., g:g + 1] for sign, (_, b) in zip(signs, unit)))
            u = rs[0].backbones
            spread = float(combined[0].var(0, ddof=1)[0]) / u if include else 0.0
            part = float(replicate_variance(*combined)[0]) if include else 0.0
            total = image + part
            # the random part is the spread across backbones (U - 1 degrees of freedom) before
            # the image disagreement is taken off it: Welch-Satterthwaite on what varies
            df = total * total * (u - 1) / (spread * spread) if spread > 0 else math.inf
            return float(np.sqrt(total)), max(df, 1.0)
        # unpaired replicates (one backbone each, or results on different backbones): each
        # result's own replicates, its backbones' means when it has several
        seed_parts = [(replicate_variance(*r.units())[g] if include else 0.0,
                       r.units()[0].shape[0] - 1) for r in rs]
        total = image + sum(v for v, _ in seed_parts)
        denom = sum(v * v / df for v, df in seed_parts if df > 0 and v > 0)
        return float(np.sqrt(total)), float(total * total / denom) if denom > 0 else math.inf

    def interval(self, name, statistic: str = "bacc") -> tuple[float, float]:
        """Wilson's interval at the statistic's effective sample size (module docstring)."""
        g = self._stat(statistic)
        se, df = self._spread([name], [1.0], g)
        q = float(student_t.ppf(1 - self.settings.alpha / 2, df))
        variance = (se / 100) ** 2 + self._rate_floor(self.results[name], g)
        p = self.estimate(name, statistic) / 100
        images = float(self.class_sizes[self.class_shares[g] > 0].sum())
        if variance <= 0 or images == 0:
            return 100 * p, 100 * p
        shrunk = (p * images + q * q / 2) / (images + q * q)  # never 0 or 1
        n = shrunk * (1 - shrunk) / variance
        center = (p + q * q / (2 * n)) / (1 + q * q / n)
        half = q / (1 + q * q / n) * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n))
        at_0, at_1 = p < 1e-12, p > 1 - 1e-12  # sums of 1 / (K n) shares miss 1 by an ulp
        low, high = (0.0 if at_0 else center - half), (1.0 if at_1 else center + half)
        return 100 * max(low, 0.0), 100 * min(high, 1.0)

    def _rate_floor(self, r: Result, g: int) -> float:
        """What the statistic's variance lacks where a class's plug-in variance p(1 - p) / n
        falls short of Jeffreys' (at 0 or 100 % the plug-in is zero)."""
        n, a = self.class_sizes, self.class_shares[g]
        keep = (a > 0) & (n > 0)
        n, a, right = n[keep], a[keep], r.class_right[keep]
        rate, adjusted = right / n, (right + 0.5) / (n + 1)
        lack = adjusted * (1 - adjusted) / (n + 1) - rate * (1 - rate) / n
        return float(np.sum(a * a * np.maximum(lack, 0)))

    def equivalent(self, a, b, statistic: str = "bacc") -> bool:
        """Two one-sided tests at alpha (Schuirmann 1987): the difference's 1 - 2 alpha
        interval lies inside +-margin. Not the same as "no significant difference", which a
        noisy comparison gives for any gap."""
        if self.settings.margin <= 0:
            return False
        g = self._stat(statistic)
        est = self.estimate(a, statistic) - self.estimate(b, statistic)
        se, df = self._spread([a, b], [1.0, -1.0], g)
        half = se * float(student_t.ppf(1 - self.settings.alpha, df))
        return -self.settings.margin < est - half and est + half < self.settings.margin

    def difference(self, a, b, statistic: str = "bacc") -> tuple[float, float]:
        """Estimate of a - b and the two-sided p-value of 'no difference'."""
        g = self._stat(statistic)
        est = self.estimate(a, statistic) - self.estimate(b, statistic)
        se, df = self._spread([a, b], [1.0, -1.0], g)
        if se == 0:
            return est, 1.0 if abs(est) < 1e-12 else 0.0
        return est, float(2 * student_t.sf(abs(est) / se, df))


def bootstrap(correct: dict, labels: np.ndarray, train_counts: np.ndarray,
              thresholds: tuple[int, int], settings: Settings = Settings()) -> Bootstrap:
    """`correct`: per result name, [S, N] booleans (seed s got test image i right), or
    [B, S, N] for B backbone replicates (the same stage-2 seeds on each), all on the same test
    images `labels`. Every result is scored on the same image resamples."""
    names = list(correct)
    labels = np.asarray(labels, dtype=np.int64)
    shares = group_weights(labels, np.asarray(train_counts), thresholds)  # [G, N]
    g_count = shares.shape[0]
    class_sizes = np.bincount(labels, minlength=len(train_counts))
    class_shares = np.stack([np.bincount(labels, row, minlength=len(class_sizes))
                             for row in shares])  # [G, K]: 1 / K_g per member class
    blocks, seed_counts, class_right, backbones = [], [], [], []
    for name in names:
        c = np.asarray(correct[name], dtype=np.float64)
        backbones.append(c.shape[0] if c.ndim == 3 else 1)
        c = c.reshape(-1, c.shape[-1]) if c.ndim == 3 else c
        if c.ndim != 2 or c.shape[1] != len(labels):
            raise LTError(f"{name}: predictions for {c.shape[-1]} test images, the labels have "
                          f"{len(labels)}")
        blocks.append((c[:, None, :] * shares[None]).reshape(-1, len(labels)))  # [S*G, N]
        seed_counts.append(c.shape[0])
        class_right.append(np.stack([np.bincount(labels, row, minlength=len(class_sizes))
                                     for row in c]).mean(0))
    columns = np.concatenate(blocks).T[class_order(labels)]  # [N, sum S*G], in class order
    offsets = np.concatenate([[0], np.cumsum([s * g_count for s in seed_counts])])
    resampled = 100 * np.concatenate([w @ columns for w in image_resamples(
        labels, settings.resamples, settings.seed)])
    on_test = 100 * columns.sum(0)
    results = {name: Result(on_test[offsets[m]:offsets[m + 1]].reshape(s, g_count),
                            resampled[:, offsets[m]:offsets[m + 1]].reshape(-1, s, g_count),
                            class_right[m], backbones[m])
               for m, (name, s) in enumerate(zip(names, seed_counts))}
    return Bootstrap(results, shares.any(1), settings, class_sizes, class_shares)


def adjust(p_values: list[float], correction: str) -> list[float]:
    """p-values adjusted for the number of comparisons (Holm, or Benjamini-Hochberg)."""
    if not p_values:
        return []
    if correction == "bh":
        from scipy.stats import false_discovery_control

        return false_discovery_control(p_values, method="bh").tolist()
    return holm(p_values)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error); scipy and numpy have none."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()
