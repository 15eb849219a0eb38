"""Stage-1 evaluation on the in-memory splits, and the training set's channel statistics."""
from __future__ import annotations

import torch

from lttools.data.prepared import Splits
from lttools.metrics import accuracy_summary


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.float(), std.float()


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(dev)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def evaluate_images(model: torch.nn.Module, splits: Splits, split: str) -> dict[str, float]:
    logits = predict_logits(model, torch.from_numpy(splits.images[split]))
    summary = accuracy_summary(logits, torch.from_numpy(splits.labels[split]), splits.class_counts)
    return {k: float(v) for k, v in summary.items()}
