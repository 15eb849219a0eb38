"""Small, pure pieces that methods are composed from. Every hyper-parameter arrives as a
tensor with one entry per head ([H]); class counts as a tensor [K] (the prior, read from the
feature store's training counts, never from test data)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lttools.errors import LTError

# ---- priors and per-class weights -------------------------------------------------------


def log_prior(counts: torch.Tensor) -> torch.Tensor:
    """log pi_j with pi_j = n_j / sum(n); a class with no images gets log(1e-12)."""
    pi = counts.double() / counts.sum()
    return pi.clamp_min(1e-12).log().float()


def normalise_to_k(w: torch.Tensor) -> torch.Tensor:
    """Scale each row of w [H, K] to sum to K."""
    return w * (w.shape[-1] / w.sum(-1, keepdim=True))


def effective_number_weights(counts: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Class-balanced weights (Cui et al.): w_j = (1 - beta) / (1 - beta^n_j), normalised to
    sum to K. beta [H] -> weights [H, K]; beta = 0 gives equal weights."""
    n = counts.double().clamp_min(1)[None]
    b = beta.double()[:, None]
    w = (1 - b) / (1 - b ** n)
    return normalise_to_k(w).float()


def inverse_power_weights(counts: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """w_j ∝ (1 / pi_j)^rho, normalised to sum to K. rho [H] -> [H, K]."""
    n = counts.double().clamp_min(1)[None]
    return normalise_to_k(n ** (-rho.double()[:, None])).float()


# ---- sampling -----------------------------------------------------------------------------


def power_class_probs(counts: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Probability of drawing class j ∝ n_j^q: q = 1 instance-balanced, 1/2 square-root,
    0 class-balanced. q [H] -> [H, K]; a class with no images is never drawn."""
    n = counts.double()[None]
    p = torch.where(n > 0, n.clamp_min(1) ** q.double()[:, None], torch.zeros_like(n))
    return (p / p.sum(-1, keepdim=True)).float()


def progressive_class_probs(counts: torch.Tensor, epoch: int, epochs: int, heads: int) -> torch.Tensor:
    """Kang et al.'s progressively-balanced sampling: (1 - t/T) instance- + (t/T) class-balanced."""
    t = epoch / max(epochs - 1, 1)
    ib = power_class_probs(counts, torch.ones(heads, device=counts.device))
    cb = power_class_probs(counts, torch.zeros(heads, device=counts.device))
    return (1 - t) * ib + t * cb


# ---- losses (per sample: [H, B, K] logits, [H, B] labels -> [H, B]) -----------------------


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log softmax(z)_y, [H, B]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)


def smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Label smoothing: target (1 - eps) onehot + eps / K, i.e.
    (1 - eps) CE + eps mean_k(-log p_k). eps: [H] (one per head) or [H, B] (per sample)."""
    logp = F.log_softmax(logits, -1)
    nll = -logp.gather(-1, y[..., None])[..., 0]
    uniform = -logp.mean(-1)
    if eps.dim() == 1:
        eps = eps[:, None]
    return (1 - eps) * nll + eps * uniform


def soft_target_grad(logits: torch.Tensor, y: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """d/dz of cross-entropy against the target (1 - eps) onehot + eps / K (eps None: the
    one-hot target, plain CE): softmax(z) - target, [H, B, K]. eps: [H] or [H, B]."""
    g = torch.softmax(logits, -1)
    h, b, k = g.shape
    if eps is None:
        return g.scatter_add_(-1, y[..., None], g.new_full((h, b, 1), -1.0))
    eps = eps.to(g.dtype).view(h, -1, 1)
    return g.sub_(eps / k).scatter_add_(-1, y[..., None], (eps - 1).expand(h, b, 1))


def cb_softmax_bce(logits: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """The class-balanced loss as the weight-balancing code computes it (the `softmax` variant
    of its CB-loss port): binary cross-entropy between the softmax probabilities and the
    one-hot target, summed over classes, times the weight of the sample's class, over K; its
    mean over the batch is the reference's mean over batch x classes. [H, K] weights."""
    p = torch.softmax(logits, -1)
    target = F.one_hot(y, logits.shape[-1]).to(p.dtype)
    bce = F.binary_cross_entropy(p, target, reduction="none").mean(-1)  # [H, B]
    return class_weights.gather(1, y) * bce


def cb_softmax_bce_grad(logits: torch.Tensor, y: torch.Tensor,
                        class_weights: torch.Tensor) -> torch.Tensor:
    """d/dz of cb_softmax_bce: with g_j = (p_j - t_j) / max(p_j (1 - p_j), 1e-12) (BCE's
    gradient as torch computes it), w_y / K p_j (g_j - sum_k p_k g_k)."""
    p = torch.softmax(logits, -1)
    target = F.one_hot(y, logits.shape[-1]).to(p.dtype)
    g = (p - target) / (p * (1 - p)).clamp_min(1e-12)
    g = p * (g - (p * g).sum(-1, keepdim=True))
    return g.mul_((class_weights.gather(1, y) / logits.shape[-1])[..., None])


def focal(logits: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Softmax focal loss: -(1 - p_y)^gamma log p_y."""
    logp_y = F.log_softmax(logits, -1).gather(-1, y[..., None])[..., 0]
    return -((1 - logp_y.exp()).clamp_min(0) ** gamma[:, None]) * logp_y


def focal_grad(logits: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """d/dz of focal: with a = 1 - p_y and L = log p_y, (onehot - p) (gamma a^(gamma-1) p_y L
    - a^gamma); the first term 0 where gamma = 0 (as autograd's pow)."""
    logp = F.log_softmax(logits, -1)
    logp_y = logp.gather(-1, y[..., None])  # [H, B, 1]
    p_y = logp_y.exp()
    a = (1 - p_y).clamp_min(0)
    gamma = gamma.to(logits.dtype)[:, None, None]
    slope = torch.where(gamma == 0, torch.zeros_like(a), gamma * a ** (gamma - 1))
    coef = slope * p_y * logp_y - a ** gamma
    g = logp.exp_().neg_().scatter_add_(-1, y[..., None], torch.ones_like(p_y))
    return g.mul_(coef)


def ldam_margins(counts: torch.Tensor, max_margin: torch.Tensor) -> torch.Tensor:
    """Delta_j ∝ n_j^(-1/4), largest margin = max_margin. [H] -> [H, K]."""
    m = counts.double().clamp_min(1) ** -0.25
    return (m[None] / m.max() * max_margin.double()[:, None]).float()


# MiSLAS's stage-2 configs (config/cifar10, config/cifar100: *_stage2_mislas.yaml):
# imbalance ratio -> (smooth_head, smooth_tail, lr_factor)
MISLAS_CIFAR = {
    "CIFAR-10": {100.0: (0.3, 0.0, 0.5), 50.0: (0.2, 0.0, 0.2), 10.0: (0.1, 0.0, 0.2)},
    "CIFAR-100": {100.0: (0.4, 0.1, 0.2), 50.0: (0.3, 0.0, 0.1), 10.0: (0.2, 0.0, 0.1)},
}
# its large-scale configs, which `auto` does not guess: the presets give them
MISLAS_LARGE = {"ImageNet-LT": (0.3, 0.0, 0.05), "iNaturalist 2018": (0.3, 0.0, 0.05),
                "Places-LT": (0.4, 0.1, 0.05)}
AUTO_MAX_RATIO = 200.0  # beyond twice the largest CIFAR ratio, no config is near


def imbalance_ratio(counts) -> float:
    """Largest over smallest training class count (classes with no image left out)."""
    present = [int(c) for c in counts if int(c) > 0]
    return max(present) / min(present)


def mislas_setting(counts) -> tuple[float, float, float]:
    """(eps_head, eps_tail, lr_factor) of MiSLAS's CIFAR stage-2 config for these training
    counts: CIFAR-10's for up to 10 classes, CIFAR-100's for up to 100, at the imbalance ratio
    nearest on a log scale (10, 50, 100). Beyond (more classes, or a ratio over 200) MiSLAS has
    no CIFAR config that fits, and its large-scale values depend on the dataset: refused."""
    classes, ratio = sum(int(c) > 0 for c in counts), imbalance_ratio(counts)
    if classes > 100 or ratio > AUTO_MAX_RATIO:
        known = "; ".join(f"{name}: eps_head {h}, eps_tail {t}, lr_factor {f}"
                          for name, (h, t, f) in MISLAS_LARGE.items())
        raise LTError(f"methods.mislas: `auto` follows MiSLAS's CIFAR configs (up to 100 classes, "
                      f"imbalance ratio up to {AUTO_MAX_RATIO:g}), and this training set has "
                      f"{classes} classes at ratio {ratio:.4g}; set eps_head, eps_tail and "
                      f"lr_factor in its entry (MiSLAS's own configs: {known}; the presets give "
                      "them)")
    table = MISLAS_CIFAR["CIFAR-10" if classes <= 10 else "CIFAR-100"]
    nearest = min(table, key=lambda ir: abs(math.log(ratio / ir)))
    return table[nearest]


def label_aware_eps(counts: torch.Tensor, eps_head: torch.Tensor,
                    eps_tail: torch.Tensor) -> torch.Tensor:
    """MiSLAS concave label-aware smoothing: eps_j = tail + (head - tail) sin(pi/2 (n_j - n_min)
    / (n_max - n_min)). [H] -> [H, K]."""
    n = counts.double()
    span = (n.max() - n.min()).clamp_min(1)
    shape = torch.sin(math.pi / 2 * (n - n.min()) / span)[None]
    return (eps_tail.double()[:, None] + (eps_head - eps_tail).double()[:, None] * shape).float()


# ---- post-hoc transforms of a linear head (W [H, K, D], b [H, K]) -------------------------


def tau_normalise(w: torch.Tensor, b: torch.Tensor, tau: torch.Tensor, keep_bias: bool = False):
    """Kang et al.'s tau-normalisation: each row w_j / ||w_j||^tau, the bias dropped (as the
    reference predicts with the normalised rows alone). keep_bias: the bias is divided with
    its row instead, so that tau = 0 leaves the head unchanged (our variant)."""
    scale = w.norm(dim=-1).clamp_min(1e-12) ** tau[:, None]  # [H, K]
    return w / scale[..., None], (b / scale if keep_bias else torch.zeros_like(b))


def posthoc_logit_adjust(w: torch.Tensor, b: torch.Tensor, tau: torch.Tensor,
                         counts: torch.Tensor):
    """argmax_j z_j - tau log pi_j, folded into the bias."""
    return w, b - tau[:, None] * log_prior(counts)[None]


# ---- weight constraint -------------------------------------------------------------------


def maxnorm_caps(w0: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
    """Per head, cap = min + thresh (max - min) of the initial row norms. w0 [H, K, D] -> [H]."""
    norms = w0.norm(dim=-1)
    lo, hi = norms.min(-1).values, norms.max(-1).values
    return lo + thresh * (hi - lo)


def apply_maxnorm(w: torch.Tensor, caps: torch.Tensor) -> None:
    """Project every row w_j in place onto the ball of radius cap (its head's)."""
    with torch.no_grad():
        norms = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        w.mul_(torch.clamp(caps[:, None, None] / norms, max=1.0))
