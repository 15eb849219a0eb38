"""What every backbone shares: the input normalisation inside the model (so a checkpoint is
self-contained), `features(x)` for the penultimate features and `fc` for the linear head."""
from __future__ import annotations

import torch
from torch import nn

# torchvision's ImageNet statistics, on the 0..255 scale lttools feeds models
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class NormalizedBackbone(nn.Module):
    """Inputs are uint8 or float images in [0, 255], normalised by per-channel mean and std
    held as buffers. Subclasses set `fc` (nn.Linear) and `feature_dim` and implement `body`."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1, 1))
        self.arch_name = type(self).__name__

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype).view_as(self.mean))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).view_as(self.std))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x.to(self.mean.dtype) - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
