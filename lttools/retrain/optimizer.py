"""The stage-2 optimizer: SGD with momentum and weight decay for every head at once (each head
its own hyper-parameters), and the per-epoch cosine learning rates it is stepped with."""
from __future__ import annotations

import math

import torch

from lttools.retrain.plan import Plan


def cosine_lr(base: torch.Tensor, epoch: int, epochs: int) -> torch.Tensor:
    """Cosine annealing stepped per epoch, as torch's CosineAnnealingLR(T_max=epochs)."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def learning_rates(plan: Plan, params, hp, epoch: int) -> dict[str, torch.Tensor]:
    """This epoch's cosine learning rate of every parameter, per head; a method's `lr_scale`
    multiplies some parameters' rate by one of its hyper-parameters."""
    lr = cosine_lr(hp["lr"], epoch, plan.epochs)
    return {name: lr * hp[plan.method.lr_scale[name]] if name in plan.method.lr_scale else lr
            for name in params}


class BatchedSGD:
    """SGD with momentum and L2 weight decay (torch.optim.SGD's update, in its order of
    rounding), hyper-parameters per head: g += wd w; buf = mu buf + g; w -= lr buf. In place:
    the gradients passed to `step` are overwritten, and nothing as large as a parameter is
    allocated after the first step. All parameters are updated by one call per operation
    (torch's _foreach_* ops: the same arithmetic per tensor, a fraction of the per-call cost
    that dominates a small step)."""

    def __init__(self, params: dict[str, torch.Tensor], momentum: torch.Tensor,
                 weight_decay: torch.Tensor):
        self.names = list(params)
        self.tensors = list(params.values())
        self.momentum = [_per_head(momentum, p) for p in self.tensors]
        self.weight_decay = [_per_head(weight_decay, p) for p in self.tensors]
        self.bufs: list[torch.Tensor] | None = None
        self._lr: tuple[dict[str, torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: dict[str, torch.Tensor]) -> None:
        """lr: per parameter name, one learning rate per head [H]."""
        # a gradient with internal overlap (e.g. an expanded one) is not writable in place
        g = [grads[n].clone() if _has_internal_overlap(grads[n]) else grads[n] for n in self.names]
        torch._foreach_addcmul_(g, self.weight_decay, self.tensors)
        if self.bufs is None:
            self.bufs = [t.clone(memory_format=torch.contiguous_format) for t in g]
        else:
            torch._foreach_mul_(self.bufs, self.momentum)
            torch._foreach_add_(self.bufs, g)
        torch._foreach_addcmul_(self.tensors, self._per_head_lr(lr), self.bufs, value=-1)

    def _per_head_lr(self, lr: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self._lr is None or self._lr[0] is not lr:  # the views made once per lr dict
            self._lr = (lr, [_per_head(lr[n], p) for n, p in zip(self.names, self.tensors)])
        return self._lr[1]


def _per_head(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[H] -> [H, 1, ...] broadcasting against `like` [H, ...]."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _has_internal_overlap(t: torch.Tensor) -> bool:
    return any(stride == 0 and size > 1 for stride, size in zip(t.stride(), t.shape))

