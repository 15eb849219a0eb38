"""Methods x revisions: each cell the selected test balanced accuracy with its interval, and
its change against the first revision with the paired test's verdict (the same test images
resampled for both; methods of one column Holm- or BH-adjusted together). Revisions on other
test images keep their own, unpaired intervals and say why they are not paired."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lttools.compare.across import Ranking, rank_across
from lttools.compare.revisions import Revision, labels
from lttools.pooled import noise_shares
from lttools.predictions import pairing_problem
from lttools.report.significance import compare_pairs
from lttools.stats import Settings, bootstrap


@dataclass
class Cell:
    estimate: float | None = None  # mean over seeds, percent
    std: float | None = None  # over seeds
    interval: tuple[float, float] | None = None
    change: float | None = None  # against the first revision, percentage points
    p_adjusted: float | None = None
    verdict: str = ""  # "", "no change", "better", "worse", "no significant difference", or why
    loma: float | None = None
    rsd: float | None = None


@dataclass
class Comparison:
    revisions: list[Revision]
    labels: list[str]
    methods: list[str]
    cells: dict[tuple[str, int], Cell]
    settings: Settings
    notes: list[str] = field(default_factory=list)
    ranking: Ranking | None = None  # the methods ranked across the revisions (3+ methods)
    noise: dict[int, tuple[int, dict[str, float]]] = field(default_factory=dict)  # column ->
    # (backbone replicates, median noise shares over its methods) where it has several

    def stage1(self, column: int) -> float | None:
        value = self.revisions[column].backbone.get("test_bacc")
        return float(value) if isinstance(value, (int, float)) else None


def _num(metrics: dict, name: str) -> float | None:
    v = metrics.get(name)
    return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None


def _identity(rev: Revision) -> dict | None:
    return next((m.predictions.test_set for m in rev.methods.values() if m.predictions), None)


def compare(revisions: list[Revision], settings: Settings) -> Comparison:
    methods = list(dict.fromkeys(k for r in revisions for k in r.methods))
    cells = {(k, c): Cell() for k in methods for c in range(len(revisions))
             if k in revisions[c].methods}
    out = Comparison(revisions, labels(revisions), methods, cells, settings)
    for (k, c), cell in cells.items():
        m = revisions[c].methods[k].metrics
        cell.estimate, cell.std = _num(m, "test_bacc_mean"), _num(m, "test_bacc_std")
        cell.loma, cell.rsd = _num(m, "test_loma_mean_mean"), _num(m, "test_rsd_mean_mean")
        if revisions[c].methods[k].predictions is None:
            cell.verdict = "no predictions"
    for rev in revisions:
        missing = {k: m.problem for k, m in rev.methods.items() if m.predictions is None}
        if missing:
            out.notes.append(f"{rev.short}: no predictions, so no interval or test, for "
                             f"{', '.join(missing)}: {next(iter(missing.values()))}")
    base = _identity(revisions[0])
    paired_cols = [0]
    for c, rev in enumerate(revisions[1:], start=1):
        identity = _identity(rev)
        why = pairing_problem(base, identity) if base and identity else None
        if why:
            out.notes.append(f"{rev.short} is not paired with {revisions[0].short}: the test sets "
                             f"differ: {why}. Its intervals are its own; no change is tested.")
            _unpaired(out, c)
        else:
            paired_cols.append(c)
    _paired(out, paired_cols)
    out.ranking = _ranking(out)
    return out


def _ranking(out: Comparison) -> Ranking | None:
    """The methods every revision has a number for, ranked across the revisions."""
    columns = range(len(out.revisions))
    common = [k for k in out.methods if all(
        (k, c) in out.cells and out.cells[(k, c)].estimate is not None for c in columns)]
    scores = np.array([[out.cells[(k, c)].estimate for k in common] for c in columns])
    blocks = [f"{label} ({r.short})" for label, r in zip(out.labels, out.revisions)]
    return rank_across(scores.reshape(len(blocks), len(common)), common, blocks,
                       out.settings.alpha, out.settings.correction)


def _predicted(out: Comparison, columns: list[int]) -> dict[tuple[str, int], np.ndarray]:
    return {(k, c): out.revisions[c].methods[k].predictions for k in out.methods for c in columns
            if (k, c) in out.cells and out.revisions[c].methods[k].predictions is not None}


def _boot(out: Comparison, preds: dict):
    first = next(iter(preds.values()))
    return bootstrap({name: p.runs() for name, p in preds.items()}, first.labels,
                     first.train_counts, first.thresholds, out.settings)


def _noise(out: Comparison, boot, preds: dict) -> None:
    """Per column with several backbone replicates: the shares of a method's mean's variance
    from the test images, the backbones and the stage-2 seeds (median over its methods)."""
    for c in sorted({c for _, c in preds}):
        names = [n for n in preds if n[1] == c and boot.results[n].backbones > 1]
        if names:
            shares = [vars(noise_shares(boot, n)) for n in names]
            out.noise[c] = (boot.results[names[0]].backbones,
                            {k: float(np.median([s[k] for s in shares])) for k in shares[0]})


def _unpaired(out: Comparison, column: int) -> None:
    preds = _predicted(out, [column])
    if preds:
        boot = _boot(out, preds)
        _noise(out, boot, preds)
        for name in preds:
            out.cells[name].interval = boot.interval(name)
            out.cells[name].verdict = "not paired (other test set)"


def _paired(out: Comparison, columns: list[int]) -> None:
    preds = _predicted(out, columns)
    if not preds:
        return
    boot = _boot(out, preds)
    _noise(out, boot, preds)
    for name in preds:
        out.cells[name].interval = boot.interval(name)
    for c in columns[1:]:
        tested = [k for k in out.methods if (k, c) in preds and (k, 0) in preds]
        same = {k for k in tested if _same(preds[(k, c)], preds[(k, 0)])}
        verdicts = compare_pairs(boot, [((k, c), (k, 0)) for k in tested if k not in same])
        for k in tested:
            cell = out.cells[(k, c)]
            if k in same:
                cell.change, cell.p_adjusted, cell.verdict = 0.0, 1.0, "no change"
                continue
            v = verdicts[(k, c)]
            cell.change, cell.p_adjusted = v.difference, v.p_adjusted
            cell.verdict = ("better" if v.difference > 0 else "worse") if v.significant \
                else "equivalent" if v.equivalent else "no significant difference"


def _same(a, b) -> bool:
    return a.selected.shape == b.selected.shape and bool((a.selected == b.selected).all())
