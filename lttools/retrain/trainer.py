"""Batched stage-2 training: every head of a plan (grid points x seeds) is trained at once on
the cached features, each with its own sampling stream, and evaluated on validation and test
after every epoch.

Heads are ordered grid-major: head h = g * len(seeds) + s. Heads of one seed share their
sampling stream across grid points (common random numbers: grid points differ only by
their hyper-parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lttools.errors import LTError
from lttools.metrics import (accuracy_summary, diagnostics, logits_magnitude,
                             per_class_accuracy, reliability)
from lttools.retrain import pieces as P
from lttools.retrain.heads import HEADS
from lttools.retrain.plan import Plan, resolve_auto
from lttools.retrain.sampling import EpochSampler


@dataclass
class FeatureData:
    """Everything stage 2 reads, as tensors on the training device."""
    train: torch.Tensor  # [V, N, D] view 0 clean, 1.. augmented
    train_labels: torch.Tensor
    val: torch.Tensor  # [T, N, D] T = 1, or 2 with the flipped view; N = 0: no validation
    val_labels: torch.Tensor
    test: torch.Tensor  # [T, N, D] as val
    test_labels: torch.Tensor
    class_counts: np.ndarray
    head_weight: torch.Tensor
    head_bias: torch.Tensor


@dataclass
class History:
    """Per head and epoch (epoch 0 = the starting head): scalar metrics and per-class arrays."""
    plan: Plan
    scalars: dict[str, dict[str, torch.Tensor]]  # split -> metric -> [H, E+1]; no "val" when
    # the store has no validation split
    per_class: dict[str, dict[str, torch.Tensor]]  # split -> {acc, loma: [H, E+1, K], rel_*: bins}
    final_params: dict[str, torch.Tensor]
    class_counts: np.ndarray  # training counts, for reporting per-class results by frequency


def head_seeds(plan: Plan) -> list[int]:
    return [s for _ in plan.grid for s in plan.seeds]


def hyper_tensors(plan: Plan, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-head hyper-parameters, [H] each."""
    return {k: torch.tensor([g[k] for g in plan.grid for _ in plan.seeds], dtype=torch.float32,
                            device=device) for k in plan.grid[0]}


def cosine_lr(base: torch.Tensor, epoch: int, epochs: int) -> torch.Tensor:
    """Cosine annealing stepped per epoch, as torch's CosineAnnealingLR(T_max=epochs)."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


class BatchedSGD:
    """SGD with momentum and L2 weight decay (torch.optim.SGD's update), hyper-parameters per
    head: buf = mu buf + (g + wd w); w -= lr buf."""

    def __init__(self, params: dict[str, torch.Tensor], momentum: torch.Tensor,
                 weight_decay: torch.Tensor):
        self.params = params
        self.momentum, self.weight_decay = momentum, weight_decay
        self.bufs: dict[str, torch.Tensor] = {}

    @staticmethod
    def _per_head(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: dict[str, torch.Tensor]) -> None:
        """lr: per parameter name, one learning rate per head [H]."""
        for name, p in self.params.items():
            g = grads[name] + self._per_head(self.weight_decay, p) * p
            if name in self.bufs:
                self.bufs[name].mul_(self._per_head(self.momentum, p)).add_(g)
            else:
                self.bufs[name] = g.clone()
            p.sub_(self._per_head(lr[name], p) * self.bufs[name])


def method_loss(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                counts: torch.Tensor | None, class_weights: torch.Tensor | None) -> torch.Tensor:
    """The method's training objective per head [H] on features x [H, B, D], labels y [H, B]:
    logits, training-time logit changes, per-sample loss, class-weighted mean."""
    method = plan.method
    z = HEADS[method.head].logits(params, frozen, x, hp)
    if method.train_logits is not None:
        z = method.train_logits(z, y, hp, counts)
    if method.loss is not None:
        per_sample = method.loss(z, y, hp, counts)
    else:
        per_sample = F.cross_entropy(z.flatten(0, 1), y.flatten(),
                                     reduction="none").view_as(y).to(z.dtype)
    if class_weights is None:
        return per_sample.mean(1)
    w = class_weights.gather(1, y)
    return (w * per_sample).sum(1) / w.sum(1)


def _prior(plan: Plan, data: FeatureData, device) -> torch.Tensor | None:
    if not plan.method.needs_prior:
        return None
    if data.class_counts is None or int(np.sum(data.class_counts)) == 0:
        raise LTError(f"method {plan.method.name!r} needs the class prior, but the features "
                      "carry no training class counts")
    return torch.as_tensor(data.class_counts, device=device)


def _predicting_head(plan: Plan, params, frozen, hp, counts):
    """The linear head (W [H, K, D], b [H, K]) that predicts, post-hoc transform applied;
    None for heads that are not one linear map (cosine, DisAlign)."""
    linear = HEADS[plan.method.head].linear(params, frozen)
    if linear is None or plan.method.posthoc is None:
        return linear
    return plan.method.posthoc(*linear, hp, counts, plan.options)


def _weight_norm_ratio(w: torch.Tensor) -> torch.Tensor:
    """Largest over smallest class-weight row norm of each head, [H, K, D] -> [H]."""
    norms = w.detach().norm(dim=-1).double().cpu()
    return norms.max(-1).values / norms.min(-1).values.clamp_min(1e-12)


def _split_logits(plan, params, frozen, views: torch.Tensor, hp, linear) -> torch.Tensor:
    """Logits averaged over the stored views (test: clean + flipped, as the paper evaluates).
    A post-hoc method predicts with its transformed linear head."""
    def logits(x):
        if plan.method.posthoc is None:
            return HEADS[plan.method.head].logits(params, frozen, x, hp)
        w, b = linear
        return torch.matmul(x, w.transpose(-1, -2)) + b[:, None, :]

    return torch.stack([logits(v) for v in views]).mean(0)


def _evaluate(plan, params, frozen, data: FeatureData, hp, counts, eval_counts):
    out_scalars, out_pc = {}, {}
    with torch.no_grad():
        linear = _predicting_head(plan, params, frozen, hp, counts)
    splits = [("val", data.val, data.val_labels)] if len(data.val_labels) else []
    for split, views, labels in splits + [("test", data.test, data.test_labels)]:
        with torch.no_grad():
            z = _split_logits(plan, params, frozen, views, hp, linear).cpu()
        lab = labels.cpu()
        sc = {**accuracy_summary(z, lab, eval_counts), **diagnostics(z, lab)}
        out_scalars[split] = sc
        rel = reliability(z, lab)
        out_pc[split] = {"acc": 100 * per_class_accuracy(z, lab), "loma": logits_magnitude(z, lab),
                         "rel_count": rel["count"], "rel_acc": rel["acc"], "rel_conf": rel["conf"]}
    w = linear[0] if linear is not None else params.get("w")  # cosine head: its raw rows
    if w is not None:
        out_scalars["test"]["wnorm_ratio"] = _weight_norm_ratio(w)
    return out_scalars, out_pc


def _learning_rates(plan: Plan, params, hp, epoch: int) -> dict[str, torch.Tensor]:
    """This epoch's cosine learning rate of every parameter, per head; a method's `lr_scale`
    multiplies some parameters' rate by one of its hyper-parameters."""
    lr = cosine_lr(hp["lr"], epoch, plan.epochs)
    return {name: lr * hp[plan.method.lr_scale[name]] if name in plan.method.lr_scale else lr
            for name in params}


def check_selection_possible(plan: Plan, data: FeatureData) -> None:
    """Without a validation split nothing can be selected: a grid would silently report its
    first point. Refused, with the reason."""
    if len(data.val_labels) == 0 and len(plan.grid) > 1:
        axes = ", ".join(f"methods.{plan.key}.{k} = {sorted({g[k] for g in plan.grid})}"
                         for k in plan.grid_keys)
        raise LTError(f"{axes} is a grid, but the feature store has no validation split "
                      "(data.val_per_class = 0), and choosing a grid point needs validation data "
                      "(never the test set). Give one value, or set data.val_per_class > 0.")


def train_heads(plan: Plan, data: FeatureData, views: int = 0, device: str | torch.device = "cpu",
                quiet: bool = False, every_epoch: bool = True) -> History:
    """Train every head of `plan`; `views` > 0 cycles epochs through augmented views 1..views.
    Heads are evaluated after every epoch (`every_epoch`, needed for epoch selection) or,
    for benchmarks, only at the start and the end."""
    dev = torch.device(device)
    if views > data.train.shape[0] - 1:
        raise LTError(f"retrain.views = {views} but the feature store holds "
                      f"{data.train.shape[0] - 1} augmented view(s); lower retrain.views or raise "
                      "features.views and re-extract")
    counts = _prior(plan, data, dev)
    plan = resolve_auto(plan, data.class_counts)
    check_selection_possible(plan, data)
    method = plan.method
    hp = hyper_tensors(plan, dev)
    seeds = head_seeds(plan)
    sampler = EpochSampler(method, data.train_labels, [torch.Generator().manual_seed(s)
                                                       for s in seeds])
    head = HEADS[method.head]
    frozen = {"w": data.head_weight.to(dev), "b": data.head_bias.to(dev)}
    init_gens = [torch.Generator().manual_seed(10_007 + s) for s in seeds]
    params = head.init(frozen["w"], frozen["b"], len(seeds), method.reinit, init_gens)
    for p in params.values():
        p.requires_grad_(True)
    opt = BatchedSGD(params, hp["momentum"], hp["weight_decay"])
    caps = None
    if method.constraint == "maxnorm":
        caps = P.maxnorm_caps(params["w"].detach(), hp["thresh"])
    y_all = data.train_labels.to(dev)
    eval_counts = data.class_counts
    history_sc: dict[str, dict[str, list]] = {}
    history_pc: dict[str, dict[str, list]] = {}

    def record():
        sc, pc = _evaluate(plan, params, frozen, data, hp, counts, eval_counts)
        for split in sc:
            for k, v in sc[split].items():
                history_sc.setdefault(split, {}).setdefault(k, []).append(v)
            for k, v in pc[split].items():
                history_pc.setdefault(split, {}).setdefault(k, []).append(v)

    record()
    bar = tqdm(range(plan.epochs), desc=f"retrain {plan.key}", unit="epoch", disable=quiet)
    for epoch in bar:
        x_epoch = data.train[1 + epoch % views if views else 0].to(dev)
        lrs = _learning_rates(plan, params, hp, epoch)
        idx = sampler.epoch(counts, hp, epoch, plan.epochs).to(dev)
        cw = method.class_weights(counts, hp, epoch, plan.epochs) if method.class_weights else None
        for s in range(0, idx.shape[1], plan.batch_size):
            ib = idx[:, s:s + plan.batch_size]
            loss = method_loss(plan, params, frozen, x_epoch[ib], y_all[ib], hp, counts, cw)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            opt.step(dict(zip(params, grads)), lrs)
            if caps is not None and plan.options.get("maxnorm_every") == "step":
                P.apply_maxnorm(params["w"], caps)
        if caps is not None and plan.options.get("maxnorm_every") == "epoch":
            P.apply_maxnorm(params["w"], caps)
        if not all(torch.isfinite(p).all() for p in params.values()):
            raise LTError(f"methods.{plan.key} diverged at epoch {epoch + 1} (non-finite "
                          "weights); lower its lr")
        if every_epoch or epoch == plan.epochs - 1:
            record()
    stack = lambda d: {s: {k: torch.stack(v, 1) for k, v in m.items()} for s, m in d.items()}
    return History(plan, stack(history_sc), stack(history_pc),
                   {k: v.detach().cpu() for k, v in params.items()},
                   np.asarray(data.class_counts if data.class_counts is not None else []))
