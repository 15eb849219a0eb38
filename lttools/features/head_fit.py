"""A linear head fitted on cached features, for a backbone that brings none for this
dataset's classes (an imported checkpoint with another class count, imported features
without a head): cross-entropy on the clean training features, instance-balanced, from a
fresh nn.Linear, SGD with momentum and a cosine schedule. It plays the part of the stage-1
head that stage-2 methods start from; the store records how it was fitted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lttools.errors import check_range


@dataclass(frozen=True)
class HeadFit:
    epochs: int = 30
    lr: float = 0.1
    weight_decay: float = 5e-4
    batch_size: int = 256
    seed: int = 0

    def validate(self, section: str) -> None:
        check_range(f"{section}.head_epochs", self.epochs, low=1)
        check_range(f"{section}.head_lr", self.lr, low=0, low_inclusive=False)
        check_range(f"{section}.head_weight_decay", self.weight_decay, low=0)
        check_range(f"{section}.head_batch_size", self.batch_size, low=1)


def fit_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: HeadFit,
             device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, str]:
    """(W [K, D], b [K], a sentence saying how it was fitted) from clean features [N, D]."""
    torch.manual_seed(cfg.seed)
    head = torch.nn.Linear(features.shape[1], num_classes).to(device)
    x, y = features.to(device, torch.float32), labels.to(device)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=0.9,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=gen).to(device)
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        train_acc = 100 * float((head(x).argmax(1) == y).float().mean())
    note = (f"fitted: cross-entropy on the clean cached training features, instance-balanced, "
            f"SGD lr {cfg.lr:g} momentum 0.9 weight decay {cfg.weight_decay:g}, batch "
            f"{cfg.batch_size}, {cfg.epochs} epochs, cosine, seed {cfg.seed}; training accuracy "
            f"{train_acc:.2f}%")
    return (head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy(), note)
