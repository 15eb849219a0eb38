"""Which gaps on the leaderboard are larger than the noise: every method's interval, and paired
tests against the best method and against a reference (`ce`), corrected for the number of
comparisons, all from the stored test predictions (lttools/stats.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lttools.pooled import NoiseShares, noise_shares, pair_spreads, probability_better, rank_shares
from lttools.predictions import Predictions, pairing_problem
from lttools.report.load import MethodResult, ranked
from lttools.stats import STATISTICS, Bootstrap, Settings, adjust, bootstrap


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@dataclass(frozen=True)
class Verdict:
    difference: float  # percentage points, first minus second
    p: float
    p_adjusted: float
    alpha: float
    equivalent: bool = False  # the difference lies inside +-margin (two one-sided tests)
    margin: float = 0.0

    @property
    def significant(self) -> bool:
        return self.p_adjusted < self.alpha

    def words(self) -> str:
        within = f", equivalent (within ±{self.margin:g})" if self.equivalent else ""
        return f"{self.difference:+.2f}, {p_text(self.p_adjusted)}{within}"

    def against_best(self) -> str:
        return ("tied: " if not self.significant else "") + self.words()

    def against_reference(self) -> str:
        return self.words() + ("" if self.significant else " (no difference)")


def compare_pairs(boot: Bootstrap, pairs: list[tuple[Any, Any]],
                  statistic: str = "bacc") -> dict[Any, Verdict]:
    """Each pair's first result against its second (paired), adjusted over all the pairs;
    keyed by the first."""
    raw = [boot.difference(a, b, statistic) for a, b in pairs]
    adjusted = adjust([p for _, p in raw], boot.settings.correction)
    return {a: Verdict(d, p, pa, boot.settings.alpha, boot.equivalent(a, b, statistic),
                       boot.settings.margin)
            for (a, b), (d, p), pa in zip(pairs, raw, adjusted)}


def compare_all(boot: Bootstrap, names: list, reference,
                statistic: str = "bacc") -> dict[Any, Verdict]:
    """Each name against `reference` (paired), adjusted over those comparisons."""
    return compare_pairs(boot, [(n, reference) for n in names if n != reference], statistic)


@dataclass(frozen=True)
class AcrossBackbones:
    """What several backbone replicates add for one method (lttools/pooled.py)."""
    per_backbone: list[float]  # each backbone's seed mean
    p_beats_best: float | None  # P(A > B) over paired runs
    p_beats_reference: float | None
    first: float  # share of backbones where it ranks first
    top3: float
    noise: NoiseShares


@dataclass
class Significance:
    settings: Settings
    boot: Bootstrap
    best: str
    reference: str | None
    vs_best: dict[str, Verdict]
    vs_reference: dict[str, Verdict]
    left_out: dict[str, str] = field(default_factory=dict)  # key -> why it has no interval
    backbones: int = 1  # backbone replicates the results pool (1: intervals hold one backbone)
    across: dict[str, AcrossBackbones] = field(default_factory=dict)  # with several backbones
    backbone_seeds: list[int] = field(default_factory=list)
    pair_spread: float | None = None  # median over method pairs of their difference's sd

    def interval(self, key: str, statistic: str = "bacc") -> tuple[float, float] | None:
        if key not in self.boot.results or not self.boot.available[STATISTICS.index(statistic)]:
            return None
        return self.boot.interval(key, statistic)

    def tied_with_best(self, key: str) -> bool:
        return key == self.best or (key in self.vs_best and not self.vs_best[key].significant)

    def description(self) -> str:
        name = self.settings.correction_name
        ref = f" and against {self.reference}" if self.reference else ""
        paired = "the same resampled images"
        if self.backbones > 1:
            paired += " and backbone by backbone (a backbone moves every method it feeds)"
        return (f"{self.settings.describe()}. Paired tests on {paired} against "
                f"the best method{ref}, {name}-adjusted over the "
                f"{len(self.vs_best)} comparisons of each kind; 'tied' with the best: adjusted "
                f"p ≥ {self.settings.alpha:.2g}.")


def significance(predictions: dict[str, Predictions], order: list[str], settings: Settings,
                 reference: str = "ce", missing: dict[str, str] | None = None,
                 ) -> Significance | None:
    """`order`: the ranked method keys, best first. Methods without predictions (`missing`
    says why), or on other test images than the best's, get no interval (said in `left_out`)."""
    left_out = {k: (missing or {}).get(k, "no predictions file: re-run its retrain stage")
                for k in order if k not in predictions}
    keys = [k for k in order if k in predictions]
    if not keys:
        return None
    first = predictions[keys[0]]
    for k in keys[1:]:
        why = pairing_problem(first.test_set, predictions[k].test_set)
        if why:
            left_out[k] = f"not on the same test images as {keys[0]}: {why}"
        elif predictions[k].runs().shape != first.runs().shape:
            left_out[k] = (f"its runs ({_runs_words(predictions[k])}) are not those of "
                           f"{keys[0]} ({_runs_words(first)}): re-run `dvc repro`")
    keys = [k for k in keys if k not in left_out]
    boot = bootstrap({k: predictions[k].runs() for k in keys}, first.labels,
                     first.train_counts, first.thresholds, settings)
    ref = reference if reference in keys and reference != keys[0] else None
    sig = Significance(settings, boot, keys[0], ref, compare_all(boot, keys, keys[0]),
                       compare_all(boot, keys, ref) if ref else {}, left_out,
                       first.num_backbones)
    if sig.backbones > 1:
        sig.backbone_seeds = list(dict.fromkeys(first.backbones.tolist()))
        ranks = rank_shares(boot, keys)
        sig.across = {k: AcrossBackbones(
            boot.results[k].units()[0][:, 0].tolist(),
            None if k == keys[0] else probability_better(boot, k, keys[0]),
            None if ref in (None, k) else probability_better(boot, k, ref),
            *ranks[k], noise_shares(boot, k)) for k in keys}
        if len(keys) > 1:
            sig.pair_spread = float(np.median(pair_spreads(boot, keys)))
    return sig


def _runs_words(p: Predictions) -> str:
    runs = p.runs()
    return (f"{runs.shape[0]} seeds" if runs.ndim == 2 else
            f"{runs.shape[0]} backbones x {runs.shape[1]} seeds")


def for_results(results: list[MethodResult], settings: Settings,
                reference: str = "ce") -> Significance | None:
    """The significance of a leaderboard's ranked methods."""
    order = [r.key for r in ranked(results)]
    by_key = {r.key: r for r in results}
    return significance({k: by_key[k].predictions for k in order if by_key[k].predictions},
                        order, settings, reference,
                        {k: by_key[k].predictions_problem for k in order
                         if by_key[k].predictions_problem})
