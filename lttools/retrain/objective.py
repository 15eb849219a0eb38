"""A method's training objective and its gradient with respect to the head's parameters: the
loss's own logit gradient and the head's pullback where both exist (no autograd), autograd
where they do not."""
from __future__ import annotations

import torch

from lttools.retrain import pieces as P
from lttools.retrain.heads import HEADS
from lttools.retrain.plan import Plan


def method_loss(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                counts: torch.Tensor | None, class_weights: torch.Tensor | None) -> torch.Tensor:
    """The method's training objective per head [H] on features x [H, B, D], labels y [H, B]."""
    z = HEADS[plan.method.head].logits(params, frozen, x, hp)
    return logits_loss(plan, z, y, hp, counts, class_weights)


def logits_loss(plan: Plan, z: torch.Tensor, y: torch.Tensor, hp, counts: torch.Tensor | None,
                class_weights: torch.Tensor | None) -> torch.Tensor:
    """The objective per head [H] from the head's logits z [H, B, K]: training-time logit
    changes, per-sample loss, class-weighted mean."""
    method = plan.method
    if method.train_logits is not None:
        z = method.train_logits(z, y, hp, counts)
    per_sample = (method.loss or _cross_entropy)(z, y, hp, counts)
    if class_weights is None:
        return per_sample.mean(1)
    w = class_weights.gather(1, y)
    return (w * per_sample).sum(1) / w.sum(1)


def _cross_entropy(z, y, hp, counts):
    return P.cross_entropy(z, y)


def _cross_entropy_grad(z, y, hp, counts):
    return P.soft_target_grad(z, y)


def analytic_gradient(plan: Plan) -> bool:
    """Whether a step of this method needs no autograd: its head has a pullback, and its
    loss a gradient (CE's is built in), with no training-time logit change between them."""
    m = plan.method
    return (hasattr(HEADS[m.head], "forward") and m.train_logits is None
            and (m.loss is None or m.loss_grad is not None))


def logits_gradient(plan: Plan, z: torch.Tensor, y: torch.Tensor, hp, counts: torch.Tensor | None,
                    class_weights: torch.Tensor | None) -> torch.Tensor:
    """d/dz of the summed per-head objective (logits_loss), from the loss's own gradient:
    each sample's share of its head's (weighted) mean."""
    per_sample = (plan.method.loss_grad or _cross_entropy_grad)(z, y, hp, counts)
    if class_weights is None:
        return per_sample.div_(y.shape[1])
    w = class_weights.gather(1, y)
    return per_sample.mul_((w / w.sum(1, keepdim=True))[..., None])


def step_gradients(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                   counts: torch.Tensor | None,
                   class_weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Gradients of the summed per-head objective: the loss's gradient with respect to the
    logits (its own, else autograd's), then the head's pullback (heads without one: autograd
    through the head)."""
    head = HEADS[plan.method.head]
    if not hasattr(head, "forward"):
        loss = method_loss(plan, params, frozen, x, y, hp, counts, class_weights)
        return dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
    with torch.no_grad():
        z, pullback = head.forward(params, frozen, x, hp)
        if analytic_gradient(plan):
            return pullback(logits_gradient(plan, z, y, hp, counts, class_weights))
    z.requires_grad_(True)
    loss = logits_loss(plan, z, y, hp, counts, class_weights)
    (gz,) = torch.autograd.grad(loss.sum(), z)
    with torch.no_grad():
        return pullback(gz)

