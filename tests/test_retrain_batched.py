"""A head trained in a batch of heads equals the same head trained alone, the plain way
(nn.Linear, torch.optim.SGD, CosineAnnealingLR). This checks the batching; the formulas
themselves are checked independently in test_method_formulas.py."""
import numpy as np
import pytest
import torch

from lttools.retrain.plan import make_plan
from lttools.retrain.reference import train_one_head
from lttools.retrain.registry import all_methods
from lttools.retrain.summary import reported_predictions, summarize
from lttools.retrain.trainer import train_heads
from retrain_helpers import toy_data


@pytest.mark.parametrize("name,entry", [
    ("ce", {}),
    ("los", {"eps": [0.5, 0.98]}),
    ("cb_reweight", {"beta": 0.99}),
    ("sqrt_sampling", {}),
    ("la_loss", {"tau": [0.0, 1.0], "lr": [0.01, 0.1]}),
    ("focal", {"gamma": [0.5, 2.0]}),
    ("progressive_sampling", {}),
])
def test_batched_heads_equal_heads_trained_alone(name, entry):
    data = toy_data(views=2)
    plan = make_plan(name, {"method": name, "epochs": 3, "batch_size": 16, **entry},
                     {"seeds": [0, 5], "lr": 0.05, "weight_decay": 1e-3})
    hist = train_heads(plan, data, views=2, quiet=True)
    h = 0
    for g in range(len(plan.grid)):
        for seed in plan.seeds:
            alone = train_one_head(plan, data, g, seed, views=2)
            torch.testing.assert_close(hist.final_params["w"][h], alone.weight.detach(),
                                       rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(hist.final_params["b"][h], alone.bias.detach(),
                                       rtol=1e-4, atol=1e-5)
            h += 1
    # different seeds really are different streams
    assert not torch.allclose(hist.final_params["w"][0], hist.final_params["w"][1])


def test_views_change_what_consecutive_epochs_see():
    data = toy_data(views=2)
    plan = make_plan("ce", {"epochs": 2}, {"seeds": [0], "lr": 0.05})
    clean = train_heads(plan, data, views=0, quiet=True).final_params["w"]
    viewed = train_heads(plan, data, views=2, quiet=True).final_params["w"]
    assert not torch.allclose(clean, viewed)
    # with 2 views, epoch 0 reads view 1 and epoch 1 reads view 2: a store whose views are
    # identical copies of view 1 gives a different result
    same = toy_data(views=2)
    same.train = torch.stack([same.train[0], same.train[1], same.train[1]])
    assert not torch.allclose(train_heads(plan, same, views=2, quiet=True).final_params["w"],
                              viewed)


def test_more_views_than_stored_is_a_clear_error():
    from lttools.errors import LTError
    plan = make_plan("ce", {"epochs": 1}, {"seeds": [0]})
    with pytest.raises(LTError, match="retrain.views = 3 but the feature store holds 2"):
        train_heads(plan, toy_data(views=2), views=3, quiet=True)


@pytest.mark.parametrize("budget_heads", [1, 2, 3])
def test_heads_trained_in_memory_sized_groups_equal_one_group(budget_heads):
    """A memory budget that fits only a few heads cuts the plan into groups (whole grid
    points, else seeds of one point); every head's result is unchanged, and so is what is
    reported (a group that cannot see the whole grid scores the test set of all its heads; one
    that holds it, only of the heads selection can report)."""
    from lttools.retrain.grouping import head_bytes
    data = toy_data(views=1)
    plan = make_plan("los", {"eps": [0.5, 0.9, 0.98], "epochs": 2}, {"seeds": [0, 1], "lr": 0.05})
    whole = train_heads(plan, data, views=1, quiet=True)
    k, d = data.head_weight.shape
    gb = budget_heads * head_bytes(plan, k, d) / 2 ** 30
    parts = train_heads(plan, data, views=1, quiet=True, memory_gb=gb)
    torch.testing.assert_close(parts.final_params["w"], whole.final_params["w"])
    for m, v in whole.scalars["val"].items():
        torch.testing.assert_close(parts.scalars["val"][m], v)
    for m, v in whole.scalars["test"].items():
        scored = torch.isfinite(v)
        assert scored.any() and torch.isfinite(parts.scalars["test"][m][scored]).all()
        torch.testing.assert_close(parts.scalars["test"][m][scored], v[scored])
    assert summarize(parts)[0] == summarize(whole)[0]


GRIDS = {"los": {"eps": [0.5, 0.98]}, "tau_norm": {}, "posthoc_la": {},
         "la_loss": {"tau": [0.0, 1.0]}}


@pytest.mark.parametrize("name", sorted(all_methods()))
def test_test_scores_only_where_reported_equal_scoring_every_epoch(name):
    """The test set is scored at each head's selected and last epoch only (the selected
    weights kept); the reported numbers equal, bit for bit, those of scoring every epoch."""
    data = toy_data(views=2)
    plan = make_plan(name, {"method": name, "epochs": 4, "batch_size": 16, **GRIDS.get(name, {})},
                     {"seeds": [0, 5], "lr": 0.05})
    lean_history = train_heads(plan, data, views=2, quiet=True)
    lean = summarize(lean_history)
    full_history = train_heads(plan, data, views=2, quiet=True, test_every_epoch=True)
    full = summarize(full_history)
    assert lean[0] == full[0]
    for part in ("per_class", "reliability", "selections", "epochs"):
        assert lean[1][part] == full[1][part], part
    assert torch.isfinite(full_history.scalars["test"]["bacc"]).all()  # really every epoch
    # lean: per seed, only the heads selection can report (best overall, best at the last epoch)
    scored_heads = torch.isfinite(lean_history.scalars["test"]["bacc"]).any(1)
    assert 1 <= int(scored_heads.sum()) <= 2 * len(plan.seeds)
    # the stored predictions are the reported results: their balanced accuracy per seed
    labels = data.test_labels.numpy()
    for history in (lean_history, full_history):
        pred = reported_predictions(history, labels, (100, 20), {})
        for which, prefix in (("selected", "test"), ("last", "last_test")):
            per_class = np.stack([[(pred.correct(which)[s, labels == c]).mean()
                                   for c in np.unique(labels)] for s in range(2)])
            bacc = 100 * per_class.mean(1)
            assert lean[0][f"{prefix}_bacc_mean"] == pytest.approx(bacc.mean(), abs=1e-9), which


@pytest.mark.parametrize("name", sorted(all_methods()))
def test_backbone_replicates_trained_at_once_equal_each_alone(name):
    """The retrain stage's path for several backbones (train_replicates: one batched program,
    each replicate's heads on its own features and stage-1 head) gives, replicate by
    replicate, what train_heads gives on that replicate alone: the same selections, scores and
    per-image predictions."""
    from lttools.retrain.trainer import train_replicates

    replicates = [toy_data(views=2, seed=s) for s in (1, 2, 3)]
    plan = make_plan(name, {"method": name, "epochs": 3}, {"seeds": [0, 4]})
    together = train_replicates(plan, replicates, views=2, quiet=True)
    alone = [train_heads(plan, r, views=2, quiet=True) for r in replicates]
    assert len(together) == 3
    for a, b in zip(alone, together):
        ma, mb = summarize(a)[0], summarize(b)[0]
        assert ma.keys() == mb.keys()
        for key in ma:
            assert mb[key] == pytest.approx(ma[key], abs=1e-6), key
        for key in a.predictions:
            assert torch.equal(a.predictions[key], b.predictions[key]), key
    # the replicates' features really differ, and so do their results
    assert not torch.equal(together[0].predictions["selected"], together[1].predictions["selected"])


def test_replicates_over_the_memory_budget_train_one_after_another():
    from lttools.retrain.trainer import train_replicates

    replicates = [toy_data(views=1, seed=s) for s in (1, 2)]
    plan = make_plan("los", {"method": "los", "epochs": 2, "eps": [0.5, 0.9]}, {"seeds": [0, 1]})
    tight = train_replicates(plan, replicates, views=1, quiet=True, memory_gb=1e-5)
    roomy = train_replicates(plan, replicates, views=1, quiet=True)
    for a, b in zip(tight, roomy):
        assert summarize(a)[0] == pytest.approx(summarize(b)[0], abs=1e-6)
