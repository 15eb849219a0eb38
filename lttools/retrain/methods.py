"""The stage-2 methods, each a few lines over `pieces`, in METHODS (registry.py finds them by
name). Formulas: shared/reference/methods.md; docs/add-a-method.md."""
from __future__ import annotations

import torch

from lttools.retrain import pieces as P
from lttools.retrain.spec import Method, Param
from lttools.retrain.sampling import EPOCH_SIZES

EPS = Param(0.98, "label-smoothing epsilon: target (1-eps) onehot + eps/K", 0, 1, True, False)
BETA = Param(0.9999, "effective-number beta; -> 1 gives inverse frequency", 0, 1, True, False)
METHODS: list[Method] = []
EPOCH_SIZE = Param("reference", "reference: an epoch of about N samples, as the reference's "
                   "loop stops it; cycle: the sampler's whole n_max x K", choices=EPOCH_SIZES)


def _cb_weights(counts, hp, epoch, epochs):
    return P.effective_number_weights(counts, hp["beta"])


METHODS.append(Method(
    "ce", "cross-entropy, instance-balanced sampling (the baseline)", needs_prior=False))

METHODS.append(Method(
    "los", "Label Over-Smooth: label smoothing with a very large eps (0.98), prior-free",
    needs_prior=False, params={"eps": EPS},
    loss=lambda z, y, hp, counts: P.smoothed_ce(z, y, hp["eps"]),
    loss_grad=lambda z, y, hp, counts: P.soft_target_grad(z, y, hp["eps"])))

METHODS.append(Method(
    "label_smoothing", "label smoothing with the usual small eps",
    needs_prior=False, params={"eps": Param(0.1, EPS.help, 0, 1, True, False)},
    loss=lambda z, y, hp, counts: P.smoothed_ce(z, y, hp["eps"]),
    loss_grad=lambda z, y, hp, counts: P.soft_target_grad(z, y, hp["eps"])))

METHODS.append(Method(
    "cb_reweight", "class-balanced re-weighting by the effective number (Cui et al.)",
    needs_prior=True, params={"beta": BETA}, class_weights=_cb_weights))

METHODS.append(Method(
    "focal", "focal loss, softmax form: -(1-p_y)^gamma log p_y",
    needs_prior=False, params={"gamma": Param(1.0, "focusing parameter", 0, 10)},
    loss=lambda z, y, hp, counts: P.focal(z, y, hp["gamma"]),
    loss_grad=lambda z, y, hp, counts: P.focal_grad(z, y, hp["gamma"])))

# cRT and LWS as classifier-balancing's ImageNet-LT configs (cls_crt.yaml, cls_lws.yaml): SGD
# lr 0.2 at batch 512 (0.025 at our 64), weight decay 5e-4, cosine, class-aware sampling with
# 4 samples per class visit, an epoch of int(N / batch) steps; 10 epochs (cRT), 5 epochs (LWS).
METHODS.append(Method(
    "crt", "classifier re-training (cRT): re-initialised head, class-aware sampling",
    needs_prior=True, reinit=True, class_aware=4, params={"epoch_size": EPOCH_SIZE},
    train_defaults={"lr": 0.025, "weight_decay": 5e-4, "epochs": 10}))

METHODS.append(Method(
    "sqrt_sampling", "square-root sampling: class j drawn with probability ∝ n_j^q",
    needs_prior=True, params={"q": Param(0.5, "sampling exponent (1 instance, 0 class)", 0, 1)},
    sampling=lambda counts, hp, epoch, epochs, heads: P.power_class_probs(counts, hp["q"])))

METHODS.append(Method(
    "progressive_sampling",
    "progressively-balanced sampling: (1-t/T) instance- + (t/T) class-balanced (Kang et al.)",
    needs_prior=True,
    sampling=lambda counts, hp, epoch, epochs, heads: P.progressive_class_probs(
        counts, epoch, epochs, heads)))

METHODS.append(Method(
    "lws", "learnable weight scaling: W, b frozen, one scale per class, class-aware sampling",
    needs_prior=True, head="lws", class_aware=4, params={"epoch_size": EPOCH_SIZE},
    train_defaults={"lr": 0.025, "weight_decay": 5e-4, "epochs": 5}))

METHODS.append(Method(
    "tau_norm", "tau-normalisation: w_j / ||w_j||^tau, the bias dropped (Kang et al.), post-hoc",
    needs_prior=False,
    params={"tau": Param([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0],
                         "normalisation power, chosen on validation", 0, 2),
            "bias": Param("drop", "drop: the reference; scale: divide the bias with its row "
                          "(tau 0 = the stage-1 head)", choices=("drop", "scale"))},
    posthoc=lambda w, b, hp, counts, opt: P.tau_normalise(w, b, hp["tau"],
                                                          keep_bias=opt["bias"] == "scale"),
    train_defaults={"epochs": 0}))

METHODS.append(Method(
    "posthoc_la", "post-hoc logit adjustment: argmax_j z_j - tau log pi_j",
    needs_prior=True, params={"tau": Param([0.0, 0.5, 1.0, 1.5, 2.0],
                                           "adjustment strength, chosen on validation", 0, 5)},
    posthoc=lambda w, b, hp, counts, opt: P.posthoc_logit_adjust(w, b, hp["tau"], counts),
    train_defaults={"epochs": 0}))

def _la_shift(hp, counts):
    return hp["tau"][:, None, None] * P.log_prior(counts)


METHODS.append(Method(
    "la_loss", "logit-adjusted loss: CE on z_j + tau log pi_j (tau 1 = Balanced Softmax)",
    needs_prior=True, params={"tau": Param(1.0, "adjustment strength", 0, 5)},
    loss=lambda z, y, hp, counts: P.cross_entropy(z + _la_shift(hp, counts), y),
    loss_grad=lambda z, y, hp, counts: P.soft_target_grad(z + _la_shift(hp, counts), y)))


def _ldam_logits(cos, y, hp, counts):
    """LDAM-DRW's LDAMLoss input: s (cos - Delta_y on the true class); the model's own output,
    which evaluation sees, is the cosine. The loss is CE on these."""
    margin = P.ldam_margins(counts, hp["max_margin"])  # [H, K]
    m_y = margin[:, None, :].expand_as(cos).gather(-1, y[..., None])  # [H, B, 1]
    # cos - m_y onehot(y), as a subtraction at the true class only (the same numbers)
    return hp["scale"][:, None, None] * cos.scatter_add(-1, y[..., None], -m_y)


def _ldam_grad(cos, y, hp, counts):
    """d/dcos of CE on s (cos - Delta_y onehot): s (softmax - onehot) of those logits."""
    return P.soft_target_grad(_ldam_logits(cos, y, hp, counts), y).mul_(
        hp["scale"][:, None, None])


def _drw_weights(counts, hp, epoch, epochs):
    deferred = epoch >= hp["drw_from"] * epochs  # [H] bool
    cb = P.effective_number_weights(counts, hp["drw_beta"])
    return torch.where(deferred[:, None], cb, torch.ones_like(cb))


METHODS.append(Method(
    "ldam_drw", "LDAM margins on a cosine head, deferred re-weighting late in training",
    needs_prior=True, head="cosine",
    params={"scale": Param(30.0, "cosine logit scale s", 0, None, False),
            "max_margin": Param(0.5, "largest margin (the rarest class)", 0, None),
            "drw_from": Param(0.8, "fraction of epochs after which weights turn class-balanced",
                              0, 1),
            "drw_beta": BETA},
    loss=lambda z, y, hp, counts: P.cross_entropy(_ldam_logits(z, y, hp, counts), y),
    loss_grad=_ldam_grad, class_weights=_drw_weights, train_defaults={"lr": 0.01}))

def _mislas_eps(y, hp, counts):
    """Each sample's smoothing: its class's label-aware eps, [H, B]."""
    return P.label_aware_eps(counts, hp["eps_head"], hp["eps_tail"]).gather(1, y)


# MiSLAS stage 2 as dvlab-research/MiSLAS train_stage2.py with its CIFAR configs: label-aware
# smoothing, class-aware sampling (its ClassAwareSampler: 4 samples per class visit; an epoch
# of ceil(N / batch) + 1 steps), the stage-1 linear head trained together with a learnable
# weight scaling, SGD lr 0.1 at batch 128 (the head's lr times lr_factor), weight decay 2e-4,
# 10 epochs, cosine; eps and lr_factor from its CIFAR-10 / CIFAR-100 config ("auto").
METHODS.append(Method(
    "mislas", "MiSLAS stage 2: label-aware smoothing, class-aware sampling, linear head + "
    "learnable weight scaling",
    needs_prior=True, head="linear_lws", class_aware=4, class_aware_reference="mislas",
    lr_scale={"w": "lr_factor", "b": "lr_factor"},
    params={"eps_head": Param("auto", "eps of the largest class", 0, 1, True, False,
                              auto=lambda counts: P.mislas_setting(counts)[0]),
            "eps_tail": Param("auto", "eps of the smallest class", 0, 1, True, False,
                              auto=lambda counts: P.mislas_setting(counts)[1]),
            "lr_factor": Param("auto", "the linear head's lr over the scales' lr", 0, None, False,
                               auto=lambda counts: P.mislas_setting(counts)[2]),
            "epoch_size": EPOCH_SIZE},
    loss=lambda z, y, hp, counts: P.smoothed_ce(z, y, _mislas_eps(y, hp, counts)),
    loss_grad=lambda z, y, hp, counts: P.soft_target_grad(z, y, _mislas_eps(y, hp, counts)),
    train_defaults={"lr": 0.1, "weight_decay": 2e-4, "epochs": 10, "batch_size": 128}))

# Weight balancing as ShadeAlsha/LTR-weight-balancing demo2_second-stage-training: the
# class-balanced loss of its CB-loss port ("softmax" variant, beta 0.9999), SGD lr 0.01,
# momentum 0.9, weight decay 0.1, 10 epochs, cosine, batch 64; MaxNorm (thresh 0.1) after
# every step as the paper says, or once per epoch as the released code does.
METHODS.append(Method(
    "weight_balancing",
    "weight balancing: class-balanced loss + strong weight decay + MaxNorm (Alshammari et al.)",
    needs_prior=True,
    params={"beta": BETA,
            "thresh": Param(0.1, "MaxNorm cap = min + thresh (max - min) of initial row norms",
                            0, 1),
            "maxnorm_every": Param("step", "step: after every step (the paper); epoch: once per "
                                   "epoch (the released code)", choices=("step", "epoch"))},
    loss=lambda z, y, hp, counts: P.cb_softmax_bce(
        z, y, P.effective_number_weights(counts, hp["beta"])),
    loss_grad=lambda z, y, hp, counts: P.cb_softmax_bce_grad(
        z, y, P.effective_number_weights(counts, hp["beta"])),
    constraint="maxnorm",
    train_defaults={"lr": 0.01, "weight_decay": 0.1, "epochs": 10}))

# DisAlign as Megvii cvpods (DisAlignLinear, GRWCrossEntropyLoss); its classification recipe
# follows classifier-balancing's: lr 0.2 at batch 512 (0.025 at 64), weight decay 5e-4,
# 10 epochs, cosine, instance-balanced sampling.
METHODS.append(Method(
    "disalign", "DisAlign: (1 + c(x) a_j) z_j + c(x) b_j, loss re-weighted by (1/pi_j)^rho",
    needs_prior=True, head="disalign",
    params={"rho": Param(1.2, "re-weighting power", 0, None)},
    class_weights=lambda counts, hp, epoch, epochs: P.inverse_power_weights(counts, hp["rho"]),
    train_defaults={"lr": 0.025, "weight_decay": 5e-4, "epochs": 10}))
