"""Classifier parametrisations, each holding H heads at once as batched tensors.

Every parametrisation starts from the stage-1 head (W0 [K, D], b0 [K]) and maps features
x ([N, D] shared by all heads, or [H, B, D] one batch per head) to logits [H, N|B, K].
Where the gradient is a product or two, `forward` also returns the pullback: the parameters'
gradients from the logits' gradient dL/dz [H, B, K], computed directly, so that autograd only
differentiates the loss (a training step then makes no per-step graph through the head, and no
temporaries as large as W beyond the gradient itself). Heads without it train through autograd.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
HP = dict[str, torch.Tensor]
Pullback = Callable[[torch.Tensor], Params]


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [N, D] or [H, B, D]; w [H, K, D] or [K, D]; b [H, K] or [K] -> [H, N|B, K]."""
    if w.dim() == 2:
        w, b = w[None], b[None]
    if x.dim() == 3 and x.shape[0] == w.shape[0]:  # a batch per head: one fused call
        return torch.baddbmm(b[:, None, :], x, w.transpose(-1, -2))
    return torch.matmul(x, w.transpose(-1, -2)) + b[:, None, :]


def _product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x W^T without a bias: x [N, D] or [H, B, D], w [H, K, D] -> [H, N|B, K]."""
    if x.dim() == 3 and x.shape[0] == w.shape[0]:
        return torch.bmm(x, w.transpose(-1, -2))
    return torch.matmul(x, w.transpose(-1, -2))


def _weight_grad(gz: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dL/dW [H, K, D] of z = x W^T from dz [H, B, K] and x [H, B, D]."""
    return torch.bmm(gz.transpose(1, 2), x)


class Linear:
    """W, b trained directly; `reinit` draws a fresh head as torch's nn.Linear would (cRT)."""

    def init(self, w0: torch.Tensor, b0: torch.Tensor, heads: int, reinit: bool,
             gens: list[torch.Generator]) -> Params:
        if not reinit:
            return {"w": w0.expand(heads, -1, -1).clone(), "b": b0.expand(heads, -1).clone()}
        k, d = w0.shape
        bound = 1 / math.sqrt(d)
        w = torch.stack([torch.rand(k, d, generator=g) for g in gens]) * 2 * bound - bound
        b = torch.stack([torch.rand(k, generator=g) for g in gens]) * 2 * bound - bound
        return {"w": w.to(w0), "b": b.to(b0)}

    def logits(self, p: Params, frozen: Params, x: torch.Tensor, hp: HP) -> torch.Tensor:
        return _affine(x, p["w"], p["b"])

    def forward(self, p: Params, frozen: Params, x: torch.Tensor,
                hp: HP) -> tuple[torch.Tensor, Pullback]:
        """z = x W^T + b: dW = dz^T x, db = sum over the batch of dz."""
        return self.logits(p, frozen, x, hp), lambda gz: {"w": _weight_grad(gz, x),
                                                          "b": gz.sum(1)}

    def linear(self, p: Params, frozen: Params) -> tuple[torch.Tensor, torch.Tensor]:
        return p["w"], p["b"]


class LearnableWeightScaling:
    """LWS: W0, b0 frozen; one learned scale per class, s_j z_j, starting at 1."""

    def init(self, w0, b0, heads, reinit, gens) -> Params:
        return {"s": torch.ones(heads, w0.shape[0], dtype=w0.dtype, device=w0.device)}

    def logits(self, p, frozen, x, hp):
        return p["s"][:, None, :] * _affine(x, frozen["w"], frozen["b"])

    def forward(self, p, frozen, x, hp):
        """z = s a with a the frozen head's logits: ds = sum over the batch of dz a."""
        a = _affine(x, frozen["w"], frozen["b"])
        return p["s"][:, None, :] * a, lambda gz: {"s": (gz * a).sum(1)}

    def linear(self, p, frozen):
        return p["s"][:, :, None] * frozen["w"][None], p["s"] * frozen["b"][None]


class LinearWithScaling:
    """MiSLAS's stage-2 head: the linear head (W, b, from stage 1) is trained together with one
    learned scale per class, s_j (W f + b)_j, the scales starting at 1."""

    def init(self, w0, b0, heads, reinit, gens) -> Params:
        return {**Linear().init(w0, b0, heads, reinit, gens),
                "s": torch.ones(heads, w0.shape[0], dtype=w0.dtype, device=w0.device)}

    def logits(self, p, frozen, x, hp):
        return p["s"][:, None, :] * _affine(x, p["w"], p["b"])

    def forward(self, p, frozen, x, hp):
        """z = s a, a = x W^T + b: ds = sum of dz a; da = dz s, then as Linear."""
        a = _affine(x, p["w"], p["b"])
        s = p["s"][:, None, :]

        def pullback(gz):
            ga = gz * s
            return {"w": _weight_grad(ga, x), "b": ga.sum(1), "s": (gz * a).sum(1)}
        return s * a, pullback

    def linear(self, p, frozen):
        return p["s"][:, :, None] * p["w"], p["s"] * p["b"]


class Cosine:
    """Normalised (cosine) head, as LDAM-DRW's NormedLinear: cos(x, w_j), no bias. These are
    the logits it predicts and is evaluated with; the scale s enters only its training loss."""

    def init(self, w0, b0, heads, reinit, gens) -> Params:
        return {"w": w0.expand(heads, -1, -1).clone()}

    def logits(self, p, frozen, x, hp):
        xn = F.normalize(x, dim=-1)
        wn = F.normalize(p["w"], dim=-1)
        return torch.matmul(xn, wn.transpose(-1, -2))

    def forward(self, p, frozen, x, hp):
        """z = x_n W_n^T with rows normalised as F.normalize (norm clamped at 1e-12):
        dW_n = dz^T x_n, and each row's dw = (dw_n - w_n (dw_n . w_n)) / ||w|| (no projection
        where the norm is clamped)."""
        xn = F.normalize(x, dim=-1)
        norm = p["w"].norm(dim=-1, keepdim=True)
        clamped = norm.clamp_min(1e-12)
        wn = p["w"] / clamped

        def pullback(gz):
            gwn = _weight_grad(gz, xn)
            along = torch.linalg.vecdot(gwn, wn)[..., None] * (norm > 1e-12)
            return {"w": gwn.addcmul_(wn, along, value=-1).div_(clamped)}
        return _product(xn, wn), pullback

    def linear(self, p, frozen):
        return None


class DistributionAlignment:
    """DisAlign: (1 + c(x) a_j) z_j + c(x) b_j with confidence c(x) = sigmoid(v x + v0);
    z from the frozen stage-1 head. Initialised as the reference's DisAlignLinear: logit scale
    a = 1, logit bias b = 0, confidence weights v = 0.1, confidence bias v0 drawn as torch's
    nn.Linear(D, 1) draws its bias, U(-1/sqrt(D), 1/sqrt(D))."""

    def init(self, w0, b0, heads, reinit, gens) -> Params:
        k, d = w0.shape
        z = dict(dtype=w0.dtype, device=w0.device)
        bound = 1 / math.sqrt(d)
        v0 = torch.stack([torch.rand((), generator=g) for g in gens]) * 2 * bound - bound
        return {"a": torch.ones(heads, k, **z), "b": torch.zeros(heads, k, **z),
                "v": torch.full((heads, d), 0.1, **z), "v0": v0.to(**z)}

    def logits(self, p, frozen, x, hp):
        z = _affine(x, frozen["w"], frozen["b"])
        conf = torch.sigmoid(torch.matmul(x, p["v"][:, :, None])[..., 0] + p["v0"][:, None])
        conf = conf[..., None]
        return (1 + conf * p["a"][:, None, :]) * z + conf * p["b"][:, None, :]

    def forward(self, p, frozen, x, hp):
        """With z the frozen logits and c the confidence [H, B, 1]: da = sum_B dz c z,
        db = sum_B dz c; dc = sum_K dz (a z + b), through the sigmoid to v (times x) and v0."""
        z = _affine(x, frozen["w"], frozen["b"])
        c = torch.sigmoid(torch.matmul(x, p["v"][:, :, None])[..., 0] + p["v0"][:, None])[..., None]
        a, b = p["a"][:, None, :], p["b"][:, None, :]

        def pullback(gz):
            gzc = gz * c
            du = (gz * (a * z + b)).sum(-1, keepdim=True) * c * (1 - c)  # [H, B, 1]
            return {"a": (gzc * z).sum(1), "b": gzc.sum(1), "v": (du * x).sum(1),
                    "v0": du[..., 0].sum(1)}
        return (1 + c * a) * z + c * b, pullback

    def linear(self, p, frozen):
        return None


HEADS = {"linear": Linear(), "lws": LearnableWeightScaling(), "linear_lws": LinearWithScaling(),
         "cosine": Cosine(), "disalign": DistributionAlignment()}
