"""Methods ranked across test sets: each revision (another dataset, imbalance ratio, backbone)
is one block. Average ranks; Friedman's test of "all methods rank alike"; pairwise Wilcoxon
signed-rank tests over the blocks, Holm-adjusted (Demšar, JMLR 2006; Benavoli, Corani & Mangili,
JMLR 2016 recommend them over the Nemenyi post-hoc, whose verdicts depend on the other methods
in the comparison); and the groups of methods no test separates, which the critical-difference
diagram joins with a bar.

With N blocks the smallest two-sided p an exact Wilcoxon test can give is 2 / 2^N: at least 6
test sets are needed for any pair to differ at 0.05 before adjustment; with fewer, the ranking
says so rather than pretending.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import friedmanchisquare, rankdata, wilcoxon

from lttools.stats import adjust


@dataclass
class Ranking:
    methods: list[str]  # best average rank first
    average_rank: dict[str, float]
    blocks: list[str]  # the test sets (revision labels) ranked over
    friedman_p: float | None
    pairs: dict[tuple[str, str], tuple[float, float]]  # (a, b): (p, adjusted p), a ranks better
    groups: list[list[str]]  # maximal runs of methods no adjusted test separates
    alpha: float
    notes: list[str] = field(default_factory=list)

    def separated(self, a: str, b: str) -> bool:
        key = (a, b) if (a, b) in self.pairs else (b, a)
        return self.pairs[key][1] < self.alpha


def smallest_wilcoxon_p(blocks: int) -> float:
    return min(1.0, 2.0 / 2 ** blocks)


def rank_across(scores: np.ndarray, methods: list[str], blocks: list[str], alpha: float = 0.05,
                correction: str = "holm") -> Ranking | None:
    """`scores` [N blocks, M methods]: higher is better (test balanced accuracy). None when
    there is nothing to rank (fewer than 2 blocks or 3 methods)."""
    scores = np.asarray(scores, dtype=np.float64)
    n, m = scores.shape
    if n < 2 or m < 3:
        return None
    ranks = np.stack([rankdata(-row) for row in scores])  # 1 = best; ties share the mean rank
    average = dict(zip(methods, ranks.mean(0).tolist()))
    order = sorted(methods, key=lambda k: (average[k], methods.index(k)))
    friedman = _friedman(scores)
    pairs_list = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    col = {k: j for j, k in enumerate(methods)}
    raw = [_wilcoxon(scores[:, col[a]], scores[:, col[b]]) for a, b in pairs_list]
    adjusted = adjust(raw, correction)
    pairs = {pair: (p, pa) for pair, p, pa in zip(pairs_list, raw, adjusted)}
    out = Ranking(order, average, blocks, friedman, pairs, [], alpha)
    out.groups = _groups(out)
    floor = smallest_wilcoxon_p(n)
    if floor >= alpha:
        out.notes.append(f"{n} test sets: the smallest p a Wilcoxon test can give is {floor:.3g}, "
                         f"so no pair can differ at {alpha:g}; {_needed(alpha)} test sets are "
                         "the fewest that can separate two methods")
    return out


def _needed(alpha: float) -> int:
    return next(k for k in range(2, 64) if smallest_wilcoxon_p(k) < alpha)


def _friedman(scores: np.ndarray) -> float | None:
    if np.all(scores == scores[:, :1]):  # every method alike on every block
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = friedmanchisquare(*scores.T).pvalue
    return float(p) if math.isfinite(p) else None


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    if np.all(a == b):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = wilcoxon(a, b, zero_method="zsplit").pvalue
    return float(p) if math.isfinite(p) else 1.0


def _groups(r: Ranking) -> list[list[str]]:
    """Maximal runs of consecutive methods (by average rank) in which no pair is separated."""
    runs = []
    for i in range(len(r.methods)):
        j = i
        while j + 1 < len(r.methods) and not any(r.separated(r.methods[k], r.methods[j + 1])
                                                 for k in range(i, j + 1)):
            j += 1
        if j > i and not any(s <= i and j <= e for s, e in runs):
            runs.append((i, j))
    return [r.methods[s:e + 1] for s, e in runs]


def describe(r: Ranking, correction_name: str = "Holm") -> str:
    friedman = "—" if r.friedman_p is None else f"p = {r.friedman_p:.3g}"
    return (f"Ranked across {len(r.blocks)} test sets by test balanced accuracy (1 = best; ties "
            f"share their mean rank). Friedman test that all methods rank alike: {friedman}. "
            f"Pairs: Wilcoxon signed-rank tests over the test sets, {correction_name}-adjusted; "
            f"a bar in the diagram joins methods no pair test separates at {r.alpha:g}.")
