"""Methods ranked across test sets (lttools/compare/across.py): average ranks with ties, the
Friedman test, Wilcoxon + Holm pairs checked against exact values computed here, the groups a
critical-difference diagram joins, honesty about too few test sets, and the comparison of
revisions on two test sets built here (not paired, ranked, drawn)."""
import itertools
import json

import numpy as np
import pytest

from lttools.compare import render
from lttools.compare.across import rank_across, smallest_wilcoxon_p
from lttools.compare.diagram import critical_difference
from lttools.compare.revisions import MethodAt, Revision
from lttools.compare.table import compare
from lttools.predictions import Predictions, identify_test_set
from lttools.stats import Settings


def exact_wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided exact signed-rank p by enumerating all 2^N sign flips (no zeros, no ties)."""
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    mean = ranks.sum() / 2
    totals = [sum(r for r, s in zip(ranks, signs) if s) for signs in
              itertools.product([0, 1], repeat=len(d))]
    return float(np.mean([abs(t - mean) >= abs(observed - mean) for t in totals]))


def test_ranks_friedman_and_pairs_on_eight_test_sets():
    rng = np.random.default_rng(0)
    n = 8
    base = rng.uniform(60, 80, n)
    scores = np.stack([base + 5 + rng.uniform(0, 1, n),  # a: always best
                       base + 2 + rng.uniform(0, 1, n),  # b: always second
                       base + rng.uniform(-0.5, 0.5, n),  # c and d: alike
                       base + rng.uniform(-0.5, 0.5, n)], 1)
    methods = ["c", "a", "d", "b"]
    r = rank_across(scores[:, [2, 0, 3, 1]], methods, [f"set{i}" for i in range(n)])
    assert r.methods[:2] == ["a", "b"] and set(r.methods[2:]) == {"c", "d"}
    assert r.average_rank["a"] == 1 and r.average_rank["b"] == 2
    assert r.average_rank["c"] + r.average_rank["d"] == 7
    assert r.friedman_p < 0.001
    for (x, y), (p, _) in r.pairs.items():
        d = scores[:, "abcd".index(x)] - scores[:, "abcd".index(y)]
        assert p == pytest.approx(exact_wilcoxon_p(d), abs=1e-12), (x, y)
    assert r.separated("a", "b") and r.separated("a", "c") and r.separated("b", "d")
    assert not r.separated("c", "d")
    assert r.groups == [r.methods[2:]] and not r.notes


def test_ties_share_their_rank():
    scores = np.array([[80.0, 80.0, 70.0], [76.0, 75.0, 74.0]])  # ranks 1.5 1.5 3; 1 2 3
    r = rank_across(scores, ["x", "y", "z"], ["s1", "s2"])
    assert r.average_rank == {"x": 1.25, "y": 1.75, "z": 3.0}


def test_too_few_test_sets_say_so_and_separate_nothing():
    scores = np.array([[90.0, 80.0, 70.0], [91.0, 81.0, 71.0]])
    r = rank_across(scores, ["a", "b", "c"], ["s1", "s2"])
    assert smallest_wilcoxon_p(2) == 0.5
    assert not any(r.separated(x, y) for x, y in r.pairs)
    assert r.groups == [["a", "b", "c"]]
    assert "no pair can differ" in r.notes[0] and "6 test sets" in r.notes[0]
    assert rank_across(scores[:, :2], ["a", "b"], ["s1", "s2"]) is None  # 2 methods: no ranking
    assert rank_across(scores[:1], ["a", "b", "c"], ["s1"]) is None  # 1 test set


def revision(name: str, dataset: str, k: int, offsets: dict[str, float], seed: int) -> Revision:
    """A revision on its own test set (k classes x 40 images): each method right with
    probability 0.6 + its offset."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), 40)
    test_set = identify_test_set({"dataset": dataset, "raw_sha256": dataset}, labels)
    rev = Revision(name, "0" * 40 if name != "workspace" else None, f"on {dataset}", {})
    for key, off in offsets.items():
        right = rng.random((3, len(labels))) < 0.6 + off
        p = Predictions(labels, right, right, np.arange(3), np.full(k, 100), (100, 20), test_set)
        acc = 100 * np.mean([right[s].reshape(k, 40).mean(1).mean() for s in range(3)])
        rev.methods[key] = MethodAt({"test_bacc_mean": acc, "test_bacc_std": 0.1}, p)
    return rev


def test_revisions_on_two_test_sets_are_ranked_and_drawn(tmp_path):
    """Two test sets built here (5 and 8 classes): not paired, each keeps its intervals, and
    the methods are ranked across them, with the diagram in the page."""
    offsets = {"ce": 0.0, "los": 0.2, "focal": 0.1}
    revs = [revision("HEAD", "toy-a", 5, offsets, 1), revision("other", "toy-b", 8, offsets, 2)]
    cmp = compare(revs, Settings(resamples=200))
    assert any("not paired" in n for n in cmp.notes)
    assert all(cmp.cells[(k, 1)].interval is not None for k in offsets)
    r = cmp.ranking
    assert r.methods == ["los", "focal", "ce"] and r.average_rank["los"] == 1
    assert r.blocks[1].startswith(cmp.labels[1])
    text = render.markdown(cmp)
    assert "## Across the revisions" in text and "Friedman" in text and "no pair can differ" in text
    png = critical_difference(r, tmp_path / "cd.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render.page(cmp, png)
    assert "data:image/png;base64," in page and "http" not in page
    as_json = json.loads(json.dumps(render.as_json(cmp)))
    assert as_json["ranking"]["methods"] == ["los", "focal", "ce"]
    assert len(as_json["ranking"]["pairs"]) == 3
