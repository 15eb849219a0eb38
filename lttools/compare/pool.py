"""`lttools compare --pool REV REV REV`: revisions that are backbone replicates of one setting
(stage 1 trained again with other `replicates.seeds`, everything else alike) pooled into one
leaderboard whose intervals and tests hold the backbones, the stage-2 seeds and the test
images: per method the pooled mean and interval, the paired difference against the best and
against `ce` (paired backbone by backbone, adjusted), P(A > B), how often it ranks first and in
the top 3 across the backbones, and the noise shares."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lttools.compare.revisions import Revision
from lttools.errors import LTError
from lttools.pooled import NoiseShares, noise_shares, probability_better, rank_shares
from lttools.predictions import pairing_problem
from lttools.report.significance import Verdict, compare_all
from lttools.stats import Bootstrap, Settings, bootstrap

REFERENCE = "ce"


@dataclass
class PooledMethod:
    key: str
    estimate: float
    interval: tuple[float, float]
    backbone_means: list[float]  # each replicate's seed mean
    vs_best: Verdict | None
    vs_reference: Verdict | None
    p_beats_best: float | None
    p_beats_reference: float | None
    first: float  # share of backbones where it ranks first
    top3: float
    noise: NoiseShares


@dataclass
class Pooled:
    backbones: list[str]  # the revisions, as given
    methods: list[PooledMethod]  # best pooled mean first
    settings: Settings
    reference: str | None
    notes: list[str] = field(default_factory=list)
    replicates: int = 0  # backbones pooled (a revision may hold several)

    @property
    def best(self) -> str:
        return self.methods[0].key


def pool(revisions: list[Revision], settings: Settings) -> Pooled:
    if len(revisions) < 2:
        raise LTError("--pool needs at least 2 revisions, one per backbone replicate (3 or "
                      "more: with 2 the spread across backbones rests on 1 degree of freedom)")
    notes = []
    keys = [k for k in revisions[0].methods if all(k in r.methods for r in revisions)]
    partial = sorted({k for r in revisions for k in r.methods} - set(keys))
    if partial:
        notes.append(f"left out, not in every revision: {', '.join(partial)}")
    correct = {}
    first = None
    for key in keys:
        preds = [r.methods[key].predictions for r in revisions]
        if any(p is None for p in preds):
            notes.append(f"{key} left out: no per-image results in every revision")
            continue
        first = first or preds[0]
        for r, p in zip(revisions, preds):
            why = pairing_problem(first.test_set, p.test_set)
            if why:
                raise LTError(f"{r.short} is not a backbone replicate of {revisions[0].short}: "
                              f"the test sets differ: {why}; pool revisions of one setting")
        runs = [r.reshape(-1, *r.shape[-2:]) for r in (p.runs() for p in preds)]  # [B_i, S, N]
        if len({r.shape[1:] for r in runs}) > 1:
            notes.append(f"{key} left out: the revisions ran other numbers of stage-2 seeds")
            continue
        correct[key] = np.concatenate(runs)  # [B, S, N]: every revision's backbones
    if len(correct) < 1:
        raise LTError("no method has per-image results in every revision; re-run them "
                      "(`dvc repro`) or pool other revisions")
    boot = bootstrap(correct, first.labels, first.train_counts, first.thresholds, settings)
    names = sorted(correct, key=lambda k: -boot.estimate(k))
    reference = REFERENCE if REFERENCE in correct else None
    vs_best = compare_all(boot, names, names[0])
    vs_ref = compare_all(boot, names, reference) if reference else {}
    ranks = rank_shares(boot, names)
    methods = [_method(boot, k, names[0], reference, vs_best, vs_ref, ranks) for k in names]
    return Pooled([r.short for r in revisions], methods, settings, reference, notes,
                  boot.results[names[0]].backbones)


def _method(boot: Bootstrap, key: str, best: str, reference: str | None, vs_best: dict,
            vs_ref: dict, ranks: dict) -> PooledMethod:
    return PooledMethod(
        key, boot.estimate(key), boot.interval(key),
        boot.results[key].units()[0][:, 0].tolist(),
        vs_best.get(key), vs_ref.get(key),
        None if key == best else probability_better(boot, key, best),
        None if reference in (None, key) else probability_better(boot, key, reference),
        *ranks[key], noise_shares(boot, key))
