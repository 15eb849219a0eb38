"""Backbone replicates pooled (`lttools compare --pool`): the pooled mean is the mean of the
backbones' seed means, P(A > B) and rank stability counted here by hand, noise shares that sum
to one, and clear errors for revisions that are not replicates of one setting."""
import numpy as np
import pytest

from lttools.compare import pool_render
from lttools.compare.pool import pool
from lttools.compare.revisions import MethodAt, Revision
from lttools.errors import LTError
from lttools.predictions import Predictions, identify_test_set
from lttools.stats import Settings

K, PER_CLASS, SEEDS = 5, 40, 3
LABELS = np.repeat(np.arange(K), PER_CLASS)


def replicates(rates: dict[str, list[float]], seed: int = 0, dataset: str = "toy"):
    """One revision per backbone; rates[method][b]: its accuracy on backbone b."""
    rng = np.random.default_rng(seed)
    test_set = identify_test_set({"dataset": dataset, "raw_sha256": dataset}, LABELS)
    backbones = len(next(iter(rates.values())))
    revs, correct = [], {k: [] for k in rates}
    for b in range(backbones):
        rev = Revision(f"bb{b}", f"{b:040d}", f"backbone.seed={b}", {})
        hard = rng.random(len(LABELS))
        for key, per_backbone in rates.items():
            right = (hard[None] + 0.1 * rng.random((SEEDS, len(LABELS)))) / 1.1 < per_backbone[b]
            correct[key].append(right)
            p = Predictions(LABELS, right, right, np.arange(SEEDS), np.full(K, 100), (100, 20),
                            test_set)
            rev.methods[key] = MethodAt({}, p)
        revs.append(rev)
    return revs, {k: np.stack(v) for k, v in correct.items()}


def test_pooled_leaderboard_counts_what_it_says():
    rates = {"ce": [0.6, 0.55, 0.62], "los": [0.8, 0.78, 0.83], "focal": [0.62, 0.66, 0.58]}
    revs, correct = replicates(rates)
    p = pool(revs, Settings(resamples=300))
    by = {m.key: m for m in p.methods}
    assert [m.key for m in p.methods][0] == "los" and p.best == "los" and p.reference == "ce"
    for key, c in correct.items():
        per_backbone = 100 * c.mean(-1).mean(-1)  # classes are equal-sized: bacc = accuracy
        assert by[key].backbone_means == pytest.approx(per_backbone.tolist())
        assert by[key].estimate == pytest.approx(per_backbone.mean())
        lo, hi = by[key].interval
        assert 0 <= lo < by[key].estimate < hi <= 100
        shares = by[key].noise
        assert shares.images + shares.backbones + shares.seeds == pytest.approx(1)
    runs = {k: 100 * c.mean(-1).reshape(-1) for k, c in correct.items()}  # [B * S]
    wins = np.mean((runs["focal"] > runs["ce"]) + 0.5 * (runs["focal"] == runs["ce"]))
    assert by["focal"].p_beats_reference == pytest.approx(wins)
    assert by["los"].first == 1 and by["los"].top3 == 1
    firsts = sum(m.first for m in p.methods)
    assert firsts == pytest.approx(1)  # one method is first on each backbone
    assert by["los"].vs_reference.significant and by["los"].p_beats_reference == 1
    text = pool_render.markdown(p)
    assert "3 backbone replicates pooled" in text and "| 1 | los |" in text
    assert pool_render.as_json(p)["methods"][0]["method"] == "los"


def test_not_replicates_is_a_clear_error():
    revs, _ = replicates({"ce": [0.6, 0.6], "los": [0.7, 0.7]})
    other, _ = replicates({"ce": [0.6], "los": [0.7]}, dataset="other")
    with pytest.raises(LTError, match="not a backbone replicate"):
        pool(revs + other, Settings(resamples=100))
    with pytest.raises(LTError, match="at least 2 revisions"):
        pool(revs[:1], Settings(resamples=100))
    revs[1].methods["los"].predictions = None
    revs[0].methods["focal"] = revs[0].methods["ce"]
    p = pool(revs, Settings(resamples=100))
    assert [m.key for m in p.methods] == ["ce"]
    assert p.notes == ["left out, not in every revision: focal",
                       "los left out: no per-image results in every revision"]


def in_one_revision(revs: list, name: str = "all") -> Revision:
    """The replicates of `revs` as one revision holds them when the pipeline trained them
    (replicates.seeds): each method's runs backbone-major, with their backbones."""
    out = Revision(name, "f" * 40, "replicates.seeds=[0, 1, 2]", {})
    for key in revs[0].methods:
        ps = [r.methods[key].predictions for r in revs]
        right = np.concatenate([p.selected for p in ps])
        out.methods[key] = MethodAt({}, Predictions(
            LABELS, right, right, np.tile(np.arange(SEEDS), len(ps)), np.full(K, 100),
            (100, 20), ps[0].test_set, np.repeat(np.arange(len(ps)), SEEDS)))
    return out


def test_replicates_inside_one_revision_pool_as_separate_revisions_do():
    """A revision whose pipeline trained the backbones (predictions with backbones) gives the
    pooled numbers the same backbones give as one revision each; two such revisions pool into
    all their backbones; `lttools compare` says each column pools them, with its noise."""
    from lttools.compare.render import as_json
    from lttools.compare.table import compare

    rates = {"ce": [0.6, 0.55, 0.62], "los": [0.8, 0.78, 0.83]}
    revs, _ = replicates(rates)
    apart, together = pool(revs, Settings(resamples=300)), pool([in_one_revision(revs)] * 2,
                                                               Settings(resamples=300))
    single = pool([in_one_revision(revs), revs[0]], Settings(resamples=300))
    assert together.replicates == 6 and single.replicates == 4
    for a, b in zip(apart.methods, together.methods):
        assert a.key == b.key and a.estimate == pytest.approx(b.estimate)
        assert b.backbone_means == pytest.approx(a.backbone_means * 2)
    table = as_json(compare([in_one_revision(revs, "x"), in_one_revision(revs, "y")],
                            Settings(resamples=300)))
    assert [v["backbones"] for v in table["noise"]] == [3, 3]
    assert sum(table["noise"][0]["shares"].values()) == pytest.approx(1, abs=0.05)
    assert table["methods"]["ce"][1]["verdict"] == "no change"
    assert "pools 3 backbone replicates" in table["description"]
