"""Every registered method, and the formula checks of methods.md."""
import math

import numpy as np
import pytest
import torch

from lttools.errors import LTError
from lttools.retrain import pieces as P
from lttools.retrain.plan import make_plan
from lttools.retrain.registry import all_methods, get_method
from lttools.retrain.objective import method_loss
from lttools.retrain.plan import hyper_tensors
from lttools.retrain.records import FeatureData
from lttools.retrain.trainer import train_heads
from retrain_helpers import toy_data

METHODS = sorted(all_methods())
SHARED = {"seeds": [0], "lr": 0.05, "epochs": 4, "batch_size": 32}


def test_all_sixteen_methods_are_registered():
    assert len(METHODS) == 16
    for name in METHODS:
        m = get_method(name)
        assert m.description and m.name == name


def _training_loss(plan, data, params) -> float:
    """Mean of the method's own objective over the whole training set (last-epoch weights);
    `plan` as trained (its "auto" values resolved)."""
    m = plan.method
    counts = torch.as_tensor(data.class_counts) if m.needs_prior else None
    hp = hyper_tensors(plan, torch.device("cpu"))
    frozen = {"w": data.head_weight, "b": data.head_bias}
    x = data.train[0].expand(plan.num_heads, -1, -1)
    y = data.train_labels.expand(plan.num_heads, -1)
    cw = m.class_weights(counts, hp, plan.epochs - 1, plan.epochs) if m.class_weights else None
    with torch.no_grad():
        return float(method_loss(plan, params, frozen, x, y, hp, counts, cw).mean())


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_and_lowers_its_loss(name):
    data = toy_data()
    plan = make_plan(name, {"method": name, "epochs": 4}, SHARED)
    from lttools.retrain.heads import HEADS
    hist = train_heads(plan, data, quiet=True)
    assert set(hist.scalars) == {"val", "test"}
    assert hist.scalars["val"]["bacc"].shape == (plan.num_heads, 5)
    start = HEADS[plan.method.head].init(data.head_weight, data.head_bias, plan.num_heads,
                                         plan.method.reinit,
                                         [torch.Generator().manual_seed(10_007)] * plan.num_heads)
    before = _training_loss(hist.plan, data, start)
    after = _training_loss(hist.plan, data, hist.final_params)
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize("name", [n for n in METHODS if not get_method(n).needs_prior])
def test_prior_free_methods_never_read_class_counts(name, monkeypatch):
    data = toy_data()
    import lttools.retrain.trainer as T
    seen = []
    real = T.class_prior
    def spy(plan, d, dev):
        out = real(plan, d, dev)
        seen.append(out)
        return out
    monkeypatch.setattr(T, "class_prior", spy)
    for piece in ("log_prior", "effective_number_weights", "inverse_power_weights",
                  "power_class_probs", "ldam_margins", "label_aware_eps"):
        monkeypatch.setattr(P, piece, lambda *a, **k: (_ for _ in ()).throw(
            AssertionError("prior piece used")))
    plan = make_plan(name, {"method": name, "epochs": 1}, SHARED)
    train_heads(plan, data, quiet=True)
    assert seen == [None]


def test_prior_method_without_counts_is_refused():
    data = toy_data()
    data.class_counts = None
    with pytest.raises(LTError, match="needs the class prior"):
        train_heads(make_plan("cb_reweight", {}, SHARED), data, quiet=True)


def test_los_targets_at_k100():
    k, eps = 100, 0.98
    z = torch.zeros(1, 1, k, requires_grad=True)
    y = torch.zeros(1, 1, dtype=torch.long)
    loss = P.smoothed_ce(z, y, torch.tensor([eps]))
    (g,) = torch.autograd.grad(loss.sum(), z)
    # gradient of CE with soft target t at uniform prediction is p - t = 1/K - t
    target = 1 / k - g[0, 0]
    assert target[0].item() == pytest.approx(0.0298, abs=1e-6)
    assert target[1:].numpy() == pytest.approx(np.full(k - 1, 0.0098), abs=1e-6)


@pytest.mark.parametrize("k,eps", [(100, 0.98), (10, 0.98), (10, 0.5)])
def test_los_optimum_margin(k, eps):
    """Minimising LOS over free logits gives margin ln(1 + K(1-eps)/eps) for every class."""
    z = torch.zeros(1, k, k, dtype=torch.float64, requires_grad=True)  # one sample per class
    y = torch.arange(k)[None]
    # float64 and tight tolerances: a float32 solve stopped ~2e-3 short of the optimum
    opt = torch.optim.LBFGS([z], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad()
        loss = P.smoothed_ce(z, y, torch.tensor([eps], dtype=torch.float64)).sum()
        loss.backward()
        return loss
    opt.step(closure)
    zz = z.detach()[0]
    margins = zz.diagonal() - (zz.sum(1) - zz.diagonal()) / (k - 1)
    assert margins.numpy() == pytest.approx(np.full(k, math.log(1 + k * (1 - eps) / eps)), abs=1e-6)


def test_tau_norm_drops_the_bias_and_tau_one_gives_unit_rows():
    w, b = torch.randn(2, 5, 4), torch.randn(2, 5)
    w0, b0 = P.tau_normalise(w, b, torch.zeros(2))
    assert torch.equal(w0, w) and torch.equal(b0, torch.zeros_like(b))
    w2, b2 = P.tau_normalise(w, b, torch.zeros(2), keep_bias=True)  # our variant: identity
    assert torch.equal(w2, w) and torch.equal(b2, b)
    w1, _ = P.tau_normalise(w, b, torch.ones(2))
    assert w1.norm(dim=-1).numpy() == pytest.approx(np.ones((2, 5)), abs=1e-6)


def test_logit_adjustment_tau_zero_is_ce():
    data = toy_data()
    shared = dict(SHARED, epochs=2)
    ce = train_heads(make_plan("ce", {}, shared), data, quiet=True)
    la = train_heads(make_plan("la_loss", {"tau": 0.0}, shared), data, quiet=True)
    ph = train_heads(make_plan("posthoc_la", {"tau": 0.0, "epochs": 2}, shared), data, quiet=True)
    for other in (la, ph):
        torch.testing.assert_close(other.final_params["w"], ce.final_params["w"])
        torch.testing.assert_close(other.scalars["test"]["acc"], ce.scalars["test"]["acc"],
                                   equal_nan=True)


def test_maxnorm_caps_every_row():
    w = torch.randn(3, 6, 4) * torch.linspace(0.5, 3, 6)[None, :, None]
    caps = P.maxnorm_caps(w, torch.tensor([0.0, 0.1, 1.0]))
    P.apply_maxnorm(w, caps)
    assert bool((w.norm(dim=-1) <= caps[:, None] + 1e-5).all())
    # thresh 1 caps at the largest initial norm: nothing changes for that head
    assert torch.isclose(w[2].norm(dim=-1).max(), caps[2])


def test_weight_balancing_keeps_rows_under_cap_after_training():
    data = toy_data()
    for every in ("step", "epoch"):
        plan = make_plan("weight_balancing", {"maxnorm_every": every, "lr": 0.5}, SHARED)
        hist = train_heads(plan, data, quiet=True)
        caps = P.maxnorm_caps(data.head_weight[None], torch.tensor([0.1]))
        assert bool((hist.final_params["w"].norm(dim=-1) <= caps + 1e-5).all())


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_class_balanced_weights_sum_to_k(beta):
    counts = torch.tensor([500, 100, 20, 5])
    w = P.effective_number_weights(counts, torch.tensor([beta]))
    assert float(w.sum()) == pytest.approx(4.0, abs=1e-5)
    assert bool((w[0, :-1] <= w[0, 1:] + 1e-7).all())  # rarer classes weigh more


def test_sampling_probabilities():
    counts = torch.tensor([100, 25, 4])
    cb = P.power_class_probs(counts, torch.zeros(1))
    sq = P.power_class_probs(counts, torch.tensor([0.5]))
    assert cb[0].numpy() == pytest.approx([1 / 3] * 3)
    assert sq[0].numpy() == pytest.approx(np.array([10, 5, 2]) / 17)
    prog0 = P.progressive_class_probs(counts, 0, 5, 1)
    prog4 = P.progressive_class_probs(counts, 4, 5, 1)
    assert prog0[0].numpy() == pytest.approx((counts / counts.sum()).numpy())
    assert prog4[0].numpy() == pytest.approx([1 / 3] * 3)


def test_mislas_eps_goes_from_head_to_tail():
    eps = P.label_aware_eps(torch.tensor([500, 100, 5]), torch.tensor([0.4]), torch.tensor([0.1]))
    assert eps[0, 0].item() == pytest.approx(0.4) and eps[0, -1].item() == pytest.approx(0.1)
    assert 0.1 < eps[0, 1].item() < 0.4


def test_ldam_margins_largest_for_rarest():
    m = P.ldam_margins(torch.tensor([625, 16, 1]), torch.tensor([0.5]))
    assert m[0].numpy() == pytest.approx([0.1, 0.25, 0.5])


def test_weight_norm_ratio_is_recorded_and_tau_one_equalises_norms():
    data = toy_data()
    hist = train_heads(make_plan("tau_norm", {"tau": [0.0, 1.0]}, SHARED), data, quiet=True,
                       test_every_epoch=True)  # every grid point scored
    ratio = hist.scalars["test"]["wnorm_ratio"][:, -1]
    norms = data.head_weight.norm(dim=-1)
    assert float(ratio[0]) == pytest.approx(float(norms.max() / norms.min()), rel=1e-5)
    assert float(ratio[1]) == pytest.approx(1.0, abs=1e-5)
    assert "wnorm_ratio" not in train_heads(make_plan("disalign", {}, SHARED), data,
                                            quiet=True).scalars["test"]


def test_prior_methods_move_predictions_towards_the_rare_class():
    """Direction of every prior adjustment: on features that carry no class information and a
    stage-1 head biased to the frequent class, each method that uses the prior gives the rarest
    class more probability than plain CE trained the same way."""
    g = torch.Generator().manual_seed(0)
    counts = np.array([120, 30, 6])
    k, d = 3, 4
    y = torch.from_numpy(np.repeat(np.arange(k), counts))
    x = torch.randn(len(y), d, generator=g)
    bias = torch.from_numpy(np.log(counts / counts.sum())).float()  # the head learned the prior
    data = FeatureData(train=x[None], train_labels=y, val=x[None, :30], val_labels=y[:30],
                       test=torch.randn(1, 300, d, generator=g), test_labels=torch.arange(300) % k,
                       class_counts=counts, head_weight=0.01 * torch.randn(k, d, generator=g),
                       head_bias=bias)
    shared = {"seeds": [0], "epochs": 6, "lr": 0.05}

    def rare_share(name):
        entry = {"epochs": 0 if get_method(name).posthoc else 6}
        if name in ("posthoc_la", "tau_norm"):
            entry["tau"] = 1.0
        hist = train_heads(make_plan(name, entry, shared), data, quiet=True)
        params, frozen = hist.final_params, {"w": data.head_weight, "b": data.head_bias}
        from lttools.retrain.evaluation import predicting_head, split_logits
        counts_t = torch.as_tensor(counts) if get_method(name).needs_prior else None
        hp = hyper_tensors(hist.plan, torch.device("cpu"))
        lin = predicting_head(hist.plan, params, frozen, hp, counts_t)
        z = split_logits(hist.plan, params, frozen, data.test, hp, lin)[0]
        return float(torch.softmax(z, -1)[:, k - 1].mean())

    base = rare_share("ce")
    for name in METHODS:
        if get_method(name).needs_prior:
            assert rare_share(name) > base, f"{name} does not move towards the rare class"


def test_a_grid_without_validation_data_is_refused_not_silently_its_first_point():
    data = toy_data()
    data.val, data.val_labels = data.val[:, :0], data.val_labels[:0]
    with pytest.raises(LTError, match=r"methods.tau_norm.tau = \[0.0, 1.0\] is a grid, but the "
                                      r"feature store has no validation split"):
        train_heads(make_plan("tau_norm", {"tau": [0.0, 1.0]}, SHARED), data, quiet=True)
    hist = train_heads(make_plan("los", {"eps": 0.9, "epochs": 3}, SHARED), data, quiet=True)
    assert "val" not in hist.scalars
    from lttools.retrain.summary import summarize
    metrics, details = summarize(hist)
    assert metrics["selected_on_validation"] == 0 and metrics["selected_epoch_mean"] == 3
    assert metrics["test_bacc_mean"] == pytest.approx(float(hist.scalars["test"]["bacc"][0, -1]))
    assert not any(k.startswith("val_") for k in metrics)
    assert all(math.isfinite(v) for v in metrics.values())


def test_validation_is_scored_over_the_same_views_as_test():
    """With the flipped view stored, the validation logits are averaged over both views as the
    test logits are: selection and reporting agree."""
    data = toy_data()
    flipped = data.val[0].flip(-1)  # any other view of the same images
    two = toy_data()
    two.val = torch.stack([data.val[0], flipped])
    plan = make_plan("ce", {"epochs": 0}, SHARED)
    one_view = train_heads(plan, data, quiet=True).scalars["val"]["loma_mean"]
    both = train_heads(plan, two, quiet=True).scalars["val"]["loma_mean"]
    w, b = data.head_weight, data.head_bias
    z = ((data.val[0] @ w.T + b) + (flipped @ w.T + b)) / 2
    from lttools.metrics import logits_magnitude
    assert float(both[0, 0]) == pytest.approx(float(logits_magnitude(z, data.val_labels).mean()),
                                              rel=1e-5)
    assert float(both[0, 0]) != pytest.approx(float(one_view[0, 0]))
