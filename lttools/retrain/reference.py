"""The plain PyTorch way, one head at a time: nn.Linear, torch.optim.SGD, CosineAnnealingLR.

It consumes the same sampling stream and the same loss as the batched trainer but its own
parameters, optimizer and schedule, so the two must give the same weights; tests check that,
and bench/retrain.py times both.
"""
from __future__ import annotations

import torch

from lttools.retrain.plan import Plan, resolve_auto
from lttools.retrain.sampling import EpochSampler
from lttools.retrain.objective import method_loss
from lttools.retrain.records import FeatureData


def train_one_head(plan: Plan, data: FeatureData, grid_index: int, seed: int,
                   views: int = 0) -> torch.nn.Linear:
    """Train one linear head of `plan` (grid point, seed) with torch's own optimizer."""
    plan = resolve_auto(plan, data.class_counts)
    method = plan.method
    if method.head != "linear" or method.reinit or method.constraint or method.lr_scale:
        raise ValueError("the reference path covers methods on a plain linear head")
    hp = {k: torch.tensor([v], dtype=torch.float32) for k, v in plan.grid[grid_index].items()}
    counts = torch.as_tensor(data.class_counts) if method.needs_prior else None
    k, d = data.head_weight.shape
    head = torch.nn.Linear(d, k)
    with torch.no_grad():
        head.weight.copy_(data.head_weight)
        head.bias.copy_(data.head_bias)
    opt = torch.optim.SGD(head.parameters(), lr=float(hp["lr"]), momentum=float(hp["momentum"]),
                          weight_decay=float(hp["weight_decay"]))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(plan.epochs, 1))
    sampler = EpochSampler(method, data.train_labels, [torch.Generator().manual_seed(seed)])
    frozen = {"w": data.head_weight, "b": data.head_bias}
    for epoch in range(plan.epochs):
        x = data.train[1 + epoch % views if views else 0]
        idx = sampler.epoch(counts, hp, epoch, plan.epochs)[0]
        cw = method.class_weights(counts, hp, epoch, plan.epochs) if method.class_weights else None
        params = {"w": head.weight[None], "b": head.bias[None]}  # views: one head of one
        for s in range(0, len(idx), plan.batch_size):
            ib = idx[s:s + plan.batch_size]
            loss = method_loss(plan, params, frozen, x[ib][None], data.train_labels[ib][None], hp,
                               counts, cw).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return head
