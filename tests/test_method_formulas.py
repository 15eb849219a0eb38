"""Every registered method's loss, class weights, sampling distribution, post-hoc transform
and starting head, checked against values computed here, independently: each formula is
written out below with numpy on a hand-made batch, never by calling lttools code. A method
added to the registry without its formula here fails `test_every_method_has_its_formulas`.

The batch: K = 3 classes, D = 2 features, 4 samples, training counts 6 / 3 / 1.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lttools.errors import LTError
from lttools.retrain.heads import HEADS
from lttools.retrain.plan import make_plan
from lttools.retrain.registry import all_methods, get_method
from lttools.retrain.sampling import EpochSampler
from lttools.retrain.objective import method_loss
from lttools.retrain.plan import hyper_tensors

X = np.array([[1.0, 0.5], [-0.5, 1.0], [0.3, -1.2], [2.0, 0.1]])
Y = np.array([0, 1, 2, 0])
W = np.array([[0.5, -0.2], [0.1, 0.4], [-0.3, 0.2]])
B = np.array([0.1, 0.0, -0.1])
COUNTS = np.array([6, 3, 1])
K = 3
PRIOR = COUNTS / COUNTS.sum()
SCALES = np.array([1.2, 0.8, 1.5])  # learned per-class scales (LWS, MiSLAS) at some step


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def nll(z, y=Y):
    """-log p_y per sample."""
    return -log_softmax(z)[np.arange(len(y)), y]


def ce(z, weights=None):
    """Mean CE; with class weights, torch's weighted mean sum(w_y l) / sum(w_y)."""
    losses = nll(z)
    if weights is None:
        return losses.mean()
    wy = weights[Y]
    return (wy * losses).sum() / wy.sum()


def smoothed(z, eps):
    """Target (1-eps) onehot + eps/K: (1-eps) nll + eps mean_k(-log p_k); eps per sample."""
    return ((1 - eps) * nll(z) + eps * (-log_softmax(z)).mean(-1)).mean()


def cb_weights(beta):
    """Cui et al.: (1-beta)/(1-beta^n_j), normalised to sum to K."""
    w = (1 - beta) / (1 - beta ** COUNTS.astype(float))
    return w / w.sum() * K


def linear(w=W, b=B):
    return X @ w.T + b


# The hyper-parameters each method is checked at (besides the training defaults).
HP = {"los": {"eps": 0.98}, "label_smoothing": {"eps": 0.1}, "cb_reweight": {"beta": 0.99},
      "focal": {"gamma": 2.0}, "la_loss": {"tau": 1.5}, "posthoc_la": {"tau": 1.5},
      "tau_norm": {"tau": 0.7}, "sqrt_sampling": {"q": 0.5},
      "ldam_drw": {"scale": 30.0, "max_margin": 0.5, "drw_from": 0.5, "drw_beta": 0.9999},
      "mislas": {"eps_head": 0.4, "eps_tail": 0.1, "lr_factor": 0.2},
      "weight_balancing": {"beta": 0.9999, "thresh": 0.1}, "disalign": {"rho": 1.2}}

# The head parameters each method trains, at some point of training (not the start).
PARAMS = {
    "lws": {"s": SCALES},
    "mislas": {"w": W, "b": B, "s": SCALES},
    "ldam_drw": {"w": W},
    "disalign": {"a": np.array([1.5, 0.5, 2.0]), "b": np.array([0.2, -0.1, 0.4]),
                 "v": np.array([0.3, -0.6]), "v0": np.array(0.05)},
}


def disalign_logits():
    p = PARAMS["disalign"]
    conf = 1 / (1 + np.exp(-(X @ p["v"] + p["v0"])))  # [B]
    return (1 + conf[:, None] * p["a"]) * linear() + conf[:, None] * p["b"]


def ldam_logits(scale=30.0, max_margin=0.5):
    """LDAM on the cosine head: s cos(x, w_j), minus s Delta_y at the true class,
    Delta_j = max_margin n_j^(-1/4) / max_k n_k^(-1/4)."""
    cos = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (
        W / np.linalg.norm(W, axis=1, keepdims=True)).T
    delta = COUNTS ** -0.25 / (COUNTS ** -0.25).max() * max_margin
    z = scale * cos
    z[np.arange(len(Y)), Y] -= scale * delta[Y]
    return z


def weight_balancing_loss(beta=0.9999):
    """The CB-loss port's "softmax" variant: BCE(softmax(z), onehot) weighted by w_y, mean over
    batch x classes."""
    p = np.exp(log_softmax(linear()))
    t = np.eye(K)[Y]
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return (cb_weights(beta)[Y][:, None] * bce).mean()


def mislas_eps(head=0.4, tail=0.1):
    """Concave: eps_j = tail + (head - tail) sin(pi/2 (n_j - n_min) / (n_max - n_min))."""
    frac = (COUNTS - COUNTS.min()) / (COUNTS.max() - COUNTS.min())
    return tail + (head - tail) * np.sin(np.pi / 2 * frac)


# Expected training loss of each method on the batch, at epoch 0 of 10 (and, for a method
# whose loss changes over the epochs, at a late epoch too: see LATE_LOSS).
LOSS = {
    "ce": lambda: ce(linear()),
    "los": lambda: smoothed(linear(), 0.98),
    "label_smoothing": lambda: smoothed(linear(), 0.1),
    "cb_reweight": lambda: ce(linear(), cb_weights(0.99)),
    "focal": lambda: ((1 - np.exp(-nll(linear()))) ** 2.0 * nll(linear())).mean(),
    "crt": lambda: ce(linear()),
    "sqrt_sampling": lambda: ce(linear()),
    "progressive_sampling": lambda: ce(linear()),
    "lws": lambda: ce(SCALES * linear()),
    "tau_norm": lambda: ce(linear()),
    "posthoc_la": lambda: ce(linear()),
    "la_loss": lambda: ce(linear() + 1.5 * np.log(PRIOR)),
    "ldam_drw": lambda: ce(ldam_logits()),  # epoch 0 < drw_from: no re-weighting yet
    "mislas": lambda: smoothed(SCALES * linear(), mislas_eps()[Y]),
    "weight_balancing": weight_balancing_loss,
    "disalign": lambda: ce(disalign_logits(), COUNTS ** -1.2 / (COUNTS ** -1.2).sum() * K),
}
LATE_LOSS = {"ldam_drw": lambda: ce(ldam_logits(), cb_weights(0.9999))}  # after drw_from

# Per-class loss weights (where the method has them), at epochs 0 and 9 of 10.
WEIGHTS = {
    "cb_reweight": lambda epoch: cb_weights(0.99),
    "ldam_drw": lambda epoch: cb_weights(0.9999) if epoch >= 5 else np.ones(K),
    "disalign": lambda epoch: PRIOR ** -1.2 / (PRIOR ** -1.2).sum() * K,  # (1/pi_j)^rho
}

# Class draw probabilities of the probability-based samplers, at epochs 0 and 9 of 10.
SAMPLING = {
    "sqrt_sampling": lambda epoch: COUNTS ** 0.5 / (COUNTS ** 0.5).sum(),
    "progressive_sampling": lambda epoch: (1 - epoch / 9) * PRIOR + epoch / 9 / K,
}

# Class-aware samplers: samples per class visit (classifier-balancing: 4; MiSLAS: 1).
# Class-aware sampling: samples per class visit (classifier-balancing's ClassAwareSampler and
# MiSLAS's copy of it: num_samples_cls=4), and the steps of an epoch of N samples at batch B
# as each reference's training loop counts them before it breaks.
CLASS_AWARE = {"crt": 4, "lws": 4, "mislas": 4}
REFERENCE_STEPS = {"crt": lambda n, b: int(n / b),  # run_networks.py: step == epoch_steps
                   "lws": lambda n, b: int(n / b),
                   "mislas": lambda n, b: int(np.ceil(n / b)) + 1}  # train_stage2.py: i > end_steps


def tau_norm_head(tau=0.7):
    norms = np.linalg.norm(W, axis=1)
    return W / norms[:, None] ** tau, np.zeros(K)  # Kang et al.: the bias is dropped


# The head a post-hoc method predicts with.
POSTHOC = {
    "tau_norm": tau_norm_head,
    "posthoc_la": lambda: (W, B - 1.5 * np.log(PRIOR)),
}


def test_every_method_has_its_formulas():
    for name, m in all_methods().items():
        assert name in LOSS, f"{name}: no independent loss formula in this file"
        assert (m.class_weights is not None) == (name in WEIGHTS), name
        assert (m.sampling is not None) == (name in SAMPLING), name
        assert (m.class_aware is not None) == (name in CLASS_AWARE), name
        assert (m.posthoc is not None) == (name in POSTHOC), name


def _plan(name):
    return make_plan(name, {**HP.get(name, {}), "epochs": 10}, {"seeds": [0]})


def _tensors(name):
    plan = _plan(name)
    m = plan.method
    hp = hyper_tensors(plan, torch.device("cpu"))
    counts = torch.tensor(COUNTS) if m.needs_prior else None
    t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731 — one head
    params = {k: t(v) for k, v in PARAMS.get(name, {"w": W, "b": B}).items()}
    frozen = {"w": torch.tensor(W, dtype=torch.float32), "b": torch.tensor(B, dtype=torch.float32)}
    return plan, hp, counts, params, frozen, t(X), torch.tensor(Y)[None]


@pytest.mark.parametrize("name", sorted(LOSS))
def test_loss_matches_the_formula(name):
    plan, hp, counts, params, frozen, x, y = _tensors(name)
    for epoch, expected in ((0, LOSS[name]), (9, LATE_LOSS.get(name, LOSS[name]))):
        cw = torch.tensor(WEIGHTS[name](epoch), dtype=torch.float32)[None] if name in WEIGHTS \
            else None
        got = method_loss(plan, params, frozen, x, y, hp, counts, cw)
        assert float(got[0]) == pytest.approx(expected(), rel=1e-5, abs=1e-6), (name, epoch)


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_class_weights_match_the_formula(name):
    plan, hp, counts, *_ = _tensors(name)
    for epoch in (0, 9):
        got = plan.method.class_weights(counts, hp, epoch, 10)[0].numpy()
        np.testing.assert_allclose(got, WEIGHTS[name](epoch), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLING))
def test_sampling_distribution_matches_the_formula(name):
    plan, hp, counts, *_ = _tensors(name)
    for epoch in (0, 9):
        got = plan.method.sampling(counts, hp, epoch, 10, 1)[0].numpy()
        np.testing.assert_allclose(got, SAMPLING[name](epoch), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CLASS_AWARE))
def test_class_aware_sampling_as_the_reference_draws(name):
    """An epoch is the reference's number of steps x the batch size (never more than the
    sampler's n_max x K); classes are visited in cycles (each class once per K visits) that
    carry over from epoch to epoch, `per_visit` samples a visit; within a class, samples come
    without repetition until the class is used up. `epoch_size: cycle` runs n_max x K."""
    labels = torch.tensor(np.repeat(np.arange(K), COUNTS))
    n, per_visit, batch = len(labels), CLASS_AWARE[name], 4
    plan = _plan(name)
    sampler = EpochSampler(plan.method, labels, [torch.Generator().manual_seed(3)], batch)
    size = min(REFERENCE_STEPS[name](n, batch) * batch, COUNTS.max() * K)
    epochs = [sampler.epoch(None, {}, e, 10)[0] for e in range(4)]
    assert [len(i) for i in epochs] == [size] * 4
    classes = []
    for idx in epochs:
        lab = labels[idx].numpy()
        visits = [lab[i:i + per_visit] for i in range(0, len(lab), per_visit)]
        assert all((v == v[0]).all() for v in visits)  # a visit stays in one class
        classes += [int(v[0]) for v in visits]
    for start in range(0, len(classes) - K + 1, K):  # every cycle visits every class once
        assert sorted(classes[start:start + K]) == list(range(K))
    stream = torch.cat(epochs)
    for c in range(K):  # within a class: a full pass before any sample repeats
        mine = stream[labels[stream] == c].numpy()
        first_pass = mine[:COUNTS[c]]
        assert len(set(first_pass)) == len(first_pass)
    cycle = EpochSampler(plan.method, labels, [torch.Generator().manual_seed(3)], batch, "cycle")
    assert len(cycle.epoch(None, {}, 0, 10)[0]) == COUNTS.max() * K


class OneCycle:
    """A list visited in shuffled passes, reshuffled when used up (the first take shuffles)."""

    def __init__(self, items, gen):
        self.items, self.gen, self.order, self.pos = items, gen, items, len(items)

    def take(self, n):
        out = []
        for _ in range(n):
            if self.pos == len(self.items):
                self.order = self.items[torch.randperm(len(self.items), generator=self.gen)]
                self.pos = 0
            out.append(int(self.order[self.pos]))
            self.pos += 1
        return out


def test_flat_class_cycles_draw_what_one_cycle_per_class_draws():
    """The class-aware sampler's flat per-class cycles (one gather per call) give the stream
    that one shuffled cycle per class, taken class by class, gives from the same generator:
    classes of 1 to 7 samples, takes within a pass, up to its end exactly, across several
    passes (from mid-pass too), and of nothing."""
    from lttools.retrain.sampling import _Cycles

    lists = [torch.arange(start, start + size) for start, size in
             ((0, 1), (1, 3), (4, 7), (11, 2), (13, 5))]
    flat = _Cycles(lists, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    one_each = [OneCycle(x, gen) for x in lists]
    for need in ([1, 3, 7, 2, 5], [0, 2, 3, 0, 1], [4, 1, 4, 9, 4], [2, 0, 0, 17, 0],
                 [0, 0, 0, 0, 0], [1, 6, 14, 1, 10], [0, 0, 3, 0, 2], [0, 0, 9, 0, 6]):
        got = flat.take(np.array(need))
        want = [i for c, n in zip(one_each, need) for i in c.take(n)]
        assert got.tolist() == want, need


def test_class_aware_epochs_at_cifar100_lt_size():
    """CIFAR-100-LT at IR 100 (10,847 images, n_max 500): the references' epochs are about N
    samples, 4.6 times fewer than the sampler's n_max x K."""
    from lttools.retrain.sampling import class_aware_epoch_size

    n, cycle = 10_847, 500 * 100
    assert class_aware_epoch_size("classifier_balancing", "reference", n, 64, cycle) == 169 * 64
    assert class_aware_epoch_size("mislas", "reference", n, 128, cycle) == 86 * 128
    assert class_aware_epoch_size("mislas", "cycle", n, 128, cycle) == cycle
    assert cycle / (169 * 64) == pytest.approx(4.62, abs=0.01)


@pytest.mark.parametrize("name", sorted(POSTHOC))
def test_posthoc_head_matches_the_formula(name):
    plan, hp, counts, params, frozen, *_ = _tensors(name)
    w, b = plan.method.posthoc(params["w"], params["b"], hp, counts, plan.options)
    want_w, want_b = POSTHOC[name]()
    np.testing.assert_allclose(w[0].numpy(), want_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b[0].numpy(), want_b, rtol=1e-5, atol=1e-7)


def test_tau_norm_scaled_bias_variant():
    plan = make_plan("tau_norm", {"tau": 0.7, "bias": "scale"}, {"seeds": [0]})
    hp = hyper_tensors(plan, torch.device("cpu"))
    w, b = plan.method.posthoc(torch.tensor(W)[None], torch.tensor(B)[None], hp, None,
                               plan.options)
    np.testing.assert_allclose(b[0].numpy(), B / np.linalg.norm(W, axis=1) ** 0.7, rtol=1e-6)
    plan0 = make_plan("tau_norm", {"tau": 0.0, "bias": "scale"}, {"seeds": [0]})
    w0, b0 = plan0.method.posthoc(torch.tensor(W)[None], torch.tensor(B)[None],
                                  hyper_tensors(plan0, torch.device("cpu")), None, plan0.options)
    np.testing.assert_allclose(w0[0].numpy(), W) and np.testing.assert_allclose(b0[0].numpy(), B)


# How each head starts: from the stage-1 head W0, b0 (cRT: re-initialised as nn.Linear).
def test_starting_heads_as_their_references():
    w0, b0 = torch.tensor(W, dtype=torch.float32), torch.tensor(B, dtype=torch.float32)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    lin = HEADS["linear"].init(w0, b0, 2, False, gens)
    np.testing.assert_allclose(lin["w"][1].numpy(), W, rtol=1e-6)
    fresh = HEADS["linear"].init(w0, b0, 2, True, gens)  # cRT: U(-1/sqrt(D), 1/sqrt(D))
    assert fresh["w"].abs().max() <= 1 / math.sqrt(2) and not torch.allclose(fresh["w"][0],
                                                                            fresh["w"][1])
    assert torch.equal(HEADS["lws"].init(w0, b0, 2, False, gens)["s"], torch.ones(2, K))
    mis = HEADS["linear_lws"].init(w0, b0, 2, False, gens)
    assert torch.equal(mis["s"], torch.ones(2, K)) and torch.equal(mis["w"][0], w0)
    dis = HEADS["disalign"].init(w0, b0, 2, False, gens)  # cvpods DisAlignLinear
    assert torch.equal(dis["a"], torch.ones(2, K)) and torch.equal(dis["b"], torch.zeros(2, K))
    assert torch.equal(dis["v"], torch.full((2, 2), 0.1))
    assert (dis["v0"].abs() <= 1 / math.sqrt(2)).all() and dis["v0"][0] != dis["v0"][1]


def test_mislas_auto_settings_follow_its_cifar_configs():
    """MiSLAS's config/cifar100/*_stage2_mislas.yaml: IR 100 -> eps 0.4 / 0.1, lr_factor 0.2;
    IR 50 -> 0.3 / 0.0, 0.1; IR 10 -> 0.2 / 0.0, 0.1. config/cifar10: IR 100 -> 0.3 / 0.0,
    0.5; IR 50 -> 0.2 / 0.0, 0.2; IR 10 -> 0.1 / 0.0, 0.2. Up to 10 classes the CIFAR-10 row."""
    from lttools.retrain.plan import resolve_auto

    def auto(counts):
        g = resolve_auto(make_plan("mislas", {}, {"seeds": [0]}), counts).grid[0]
        return g["eps_head"], g["eps_tail"], g["lr_factor"]

    def profile(classes, ratio):
        return [round(ratio * 5)] + [5] * (classes - 1)

    for classes, ratio, want in ((100, 100, (0.4, 0.1, 0.2)), (100, 50, (0.3, 0.0, 0.1)),
                                 (100, 10, (0.2, 0.0, 0.1)), (100, 120, (0.4, 0.1, 0.2)),
                                 (37, 12, (0.2, 0.0, 0.1)), (10, 100, (0.3, 0.0, 0.5)),
                                 (10, 50, (0.2, 0.0, 0.2)), (10, 10, (0.1, 0.0, 0.2)),
                                 (3, 60, (0.2, 0.0, 0.2))):
        assert auto(profile(classes, ratio)) == pytest.approx(want), (classes, ratio)
    assert get_method("mislas").train_defaults == {"lr": 0.1, "weight_decay": 2e-4, "epochs": 10,
                                                   "batch_size": 128}


@pytest.mark.parametrize("classes,ratio", [(1000, 256), (8142, 500), (365, 996), (100, 256)])
def test_mislas_auto_is_refused_where_no_cifar_config_fits(classes, ratio):
    """ImageNet-LT, iNaturalist 2018, Places-LT are not CIFAR-100: `auto` says so and lists
    MiSLAS's own values for them."""
    from lttools.retrain.plan import resolve_auto

    counts = [ratio * 5] + [5] * (classes - 1)
    with pytest.raises(LTError) as err:
        resolve_auto(make_plan("mislas", {}, {"seeds": [0]}), counts)
    text = str(err.value)
    assert f"this training set has {classes} classes at ratio {ratio:.4g}" in text
    assert "ImageNet-LT: eps_head 0.3, eps_tail 0.0, lr_factor 0.05" in text
    assert "Places-LT: eps_head 0.4, eps_tail 0.1, lr_factor 0.05" in text


# MiSLAS's config/{imagenet,ina2018,places}/*_stage2_mislas.yaml, read there by hand:
# smooth_head, smooth_tail, lr_factor, batch_size, weight_decay (lr 0.1, 10 epochs in all)
MISLAS_PRESETS = {"imagenet_lt": (0.3, 0.0, 0.05, 256, 5e-4),
                  "inat2018": (0.3, 0.0, 0.05, 256, 1e-4),
                  "places_lt": (0.4, 0.1, 0.05, 256, 5e-4)}


@pytest.mark.parametrize("preset", sorted(MISLAS_PRESETS))
def test_presets_give_mislas_its_own_config(preset):
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "presets" / f"{preset}.yaml")
                            .read_text())
    plan = make_plan("mislas", params["methods"]["mislas"], params["retrain"])
    g = plan.grid[0]
    head, tail, factor, batch, wd = MISLAS_PRESETS[preset]
    assert (g["eps_head"], g["eps_tail"], g["lr_factor"]) == pytest.approx((head, tail, factor))
    assert (plan.batch_size, g["weight_decay"], g["lr"], plan.epochs) == \
        (batch, pytest.approx(wd), pytest.approx(0.1), 10)


def test_ldam_evaluates_the_raw_cosine_its_model_outputs():
    """LDAM-DRW's NormedLinear outputs cos(x, w_j); the scale s enters only LDAMLoss. What
    evaluation sees (accuracy, ECE, LoMa, RSD) is the cosine, not s x cosine."""
    plan, hp, counts, params, frozen, x, y = _tensors("ldam_drw")
    got = HEADS[plan.method.head].logits(params, frozen, x, hp)[0].numpy()
    cos = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ \
        (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    np.testing.assert_allclose(got, cos, rtol=1e-5)
    assert np.abs(got).max() <= 1
